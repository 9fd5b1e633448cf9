from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.artifacts import ArtifactError
from training import services
from training.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Register a model version: a folder in the artifact store (its URL), a local folder or .gguf file "
        "(published into the store, so workers on other hosts can load it), a Hugging Face id, or the built-in "
        "smollm2-135m-instruct."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a unique name for the version")
        parser.add_argument("path", help="store URL, local folder or .gguf file, Hugging Face id or built-in name")
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
        except (ValueError, ArtifactError) as exc:
            raise CommandError(str(exc)) from exc
        if version.store_url and version.store_url != version.path:
            self.stdout.write(f"registered {version.name}: published {version.path} to {version.store_url}")
        elif version.store_url:
            self.stdout.write(f"registered {version.name} from the store at {version.store_url}")
        else:
            self.stdout.write(f"registered {version.name} at {version.path} (each worker resolves it itself)")
