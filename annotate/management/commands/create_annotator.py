from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate import services


class Command(BaseCommand):
    help = "Create a user who can judge (or reset their password); --staff makes an admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--staff", action="store_true", help="may import, export, train and generate")

    def handle(self, *args: object, **options: object) -> None:
        try:
            user = services.annotator_create(
                username=str(options["username"]), password=str(options["password"]), staff=bool(options["staff"])
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        role = "staff" if user.is_staff else "annotator"  # type: ignore[attr-defined]
        self.stdout.write(f"{role} {user.get_username()} is ready")
