from django.core.management.base import BaseCommand, CommandError, CommandParser

from training import services
from training.models import ModelVersion


class Command(BaseCommand):
    help = "Register a model version: a Hugging Face id, a local folder, or the built-in smollm2-135m-instruct."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a unique name for the version")
        parser.add_argument("path", help="Hugging Face model id or local folder")
        parser.add_argument("--parent", default=None, help="the version it was derived from")

    def handle(self, *args: object, **options: object) -> None:
        parent = None
        if options["parent"]:
            parent = ModelVersion.objects.filter(name=options["parent"]).first()
            if parent is None:
                raise CommandError(f"no model version named {options['parent']!r}")
        try:
            version = services.model_version_register(
                name=str(options["name"]), path=str(options["path"]), parent=parent
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"registered {version.name} at {version.path}")
