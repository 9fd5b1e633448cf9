from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from annotate import services
from annotate.filters import JudgementFilter, add_quality_arguments, quality_options


def _since(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since {value!r}: use a date (2026-11-25) or a date and time")
        parsed = datetime(day.year, day.month, day.day)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Export decided comparisons as TRL's prompt/chosen/rejected preference dataset."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="output file (jsonl, parquet) or folder (hf)")
        parser.add_argument("--format", choices=services.EXPORT_FORMATS, default="jsonl")
        parser.add_argument("--conversational", action="store_true", help="message lists instead of strings")
        parser.add_argument("--min-agreement", type=float, default=0.0, help="keep rows at least this agreed (0-1)")
        parser.add_argument("--since", type=_since, default=None, help="only judgements made since this date")
        parser.add_argument(
            "--exclude-annotator",
            action="append",
            default=[],
            metavar="NAME",
            help="leave out this annotator or import file (repeat it, or separate names with commas)",
        )
        add_quality_arguments(parser)

    def handle(self, *args: object, **options: object) -> None:
        try:
            judgement_filter = JudgementFilter.from_inputs(
                since=options["since"],  # type: ignore[arg-type]
                min_agreement=float(options["min_agreement"]),  # type: ignore[arg-type]
                exclude=list(options["exclude_annotator"]),  # type: ignore[call-overload]
                **quality_options(options),
            )
            result = services.export_preferences(
                path=str(options["path"]),
                fmt=str(options["format"]),
                conversational=bool(options["conversational"]),
                judgement_filter=judgement_filter,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(result.summary())
