from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training.services.backup import BackupError, database_load


class Command(BaseCommand):
    help = (
        "Load a duet_dump folder into this instance's database, which must be migrated and empty; all or nothing. "
        "Loaded users have unusable passwords until create_annotator NAME --password ... sets one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="a folder written by duet_dump")

    def handle(self, *args: object, **options: object) -> None:
        try:
            loaded = database_load(path=options["path"])  # type: ignore[arg-type]
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        for label, rows in loaded.items():
            self.stdout.write(f"{label}: {rows} rows")
        self.stdout.write("loaded; users must set a password (create_annotator NAME --password ...) to log in")
