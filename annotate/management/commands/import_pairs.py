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
    help = (
        "Import prompt/chosen/rejected pairs (TRL's standard or conversational format) as open comparisons; "
        "--judged also records the file's choice as a judgement from a source named after the file; "
        "--gold makes every pair a gold item whose answer is its chosen side (a tie where the row says \"tie\": true)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_format_argument(parser)
        add_campaign_argument(parser)
        parser.add_argument("--judged", action="store_true", help="record the file's choice as a judgement")
        parser.add_argument(
            "--gold", action="store_true", help="import gold items: the chosen side (or a tie) is the expected answer"
        )
        parser.add_argument(
            "--judgements-per-comparison",
            "-k",
            type=int,
            default=None,
            help="judgements each comparison wants (default: DUET_JUDGEMENTS_PER_COMPARISON)",
        )

    def handle(self, *args: object, **options: object) -> None:
        path = str(options["path"])
        campaign = campaign_option(options["campaign"])
        with open_import_file(path) as stream:
            try:
                result = services.pairs_import(
                    stream=stream,
                    name=path,
                    fmt=options["format"],  # type: ignore[arg-type]
                    judged=bool(options["judged"]),
                    gold=bool(options["gold"]),
                    target_judgements=options["judgements_per_comparison"],  # type: ignore[arg-type]
                    campaign=campaign,
                )
            except ImportFileError as exc:
                raise import_error(exc) from exc
        self.stdout.write(result.summary())
