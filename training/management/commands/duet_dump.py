from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training.services.backup import BackupError, database_dump


class Command(BaseCommand):
    help = (
        "Write every user (without passwords), prompt, completion, comparison, judgement, model version and run "
        "to PATH, a new folder of JSONL files with a manifest; duet_load moves them into another instance. "
        "API tokens stay behind; copy var/runs (weights, datasets) as files."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="a folder that does not exist yet, or is empty")

    def handle(self, *args: object, **options: object) -> None:
        try:
            manifest = database_dump(path=options["path"])  # type: ignore[arg-type]
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        for entry in manifest["models"]:
            self.stdout.write(f"{entry['model']}: {entry['rows']} rows")
        self.stdout.write(f"dumped from {manifest['source_vendor']} into {options['path']}")
