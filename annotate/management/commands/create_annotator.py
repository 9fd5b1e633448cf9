from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate import services


class Command(BaseCommand):
    help = "Create a user who can judge (or reset their password); --staff runs the project, --superuser the admin too."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        role = parser.add_mutually_exclusive_group()
        role.add_argument("--staff", action="store_true", help="may import, export, train and generate")
        role.add_argument("--superuser", action="store_true", help="staff, and every permission in the Django admin")

    def handle(self, *args: object, **options: object) -> None:
        try:
            user = services.annotator_create(
                username=str(options["username"]),
                password=str(options["password"]),
                staff=bool(options["staff"]),
                superuser=bool(options["superuser"]),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        role = "superuser" if user.is_superuser else "staff" if user.is_staff else "annotator"  # type: ignore[attr-defined]
        self.stdout.write(f"{role} {user.get_username()} is ready")
