from django.core.management.base import BaseCommand, CommandParser

from annotate import services
from annotate.formats import ImportFileError
from annotate.management.commands._importing import (
    add_campaign_argument,
    add_format_argument,
    campaign_option,
    import_error,
    open_import_file,
)


class Command(BaseCommand):
    help = "Import prompts (a string or a list of {role, content} messages per record; optional id and tags)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_format_argument(parser)
        add_campaign_argument(parser)

    def handle(self, *args: object, **options: object) -> None:
        path = str(options["path"])
        campaign = campaign_option(options["campaign"])
        with open_import_file(path) as stream:
            try:
                result = services.prompts_import(
                    stream=stream, name=path, fmt=options["format"], campaign=campaign  # type: ignore[arg-type]
                )
            except ImportFileError as exc:
                raise import_error(exc) from exc
        self.stdout.write(result.summary())
