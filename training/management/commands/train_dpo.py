from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from annotate.filters import JudgementFilter, add_quality_arguments, quality_options
from training import services
from training.management.commands._runs import (
    add_training_arguments,
    add_wait_arguments,
    training_options,
    version_named,
    wait,
    wait_deadline,
)


class Command(BaseCommand):
    help = (
        "Queue a DPO run on the judgements (a worker trains it: manage.py rqworker gpu). "
        "Prints the run's id; with --wait, waits and prints the new model version's name last."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base", default=None, help="model version to start from (default: the newest)")
        parser.add_argument("--since", default=None, help="only judgements made since this date/time")
        parser.add_argument("--min-agreement", type=float, default=0.0, help="keep pairs at least this agreed")
        parser.add_argument("--exclude-annotator", action="append", default=[], metavar="NAME")
        add_quality_arguments(parser)
        add_wait_arguments(parser, until="the run ends")
        add_training_arguments(parser)

    def handle(self, *args: object, **options: object) -> None:
        since = _since(options["since"])
        try:
            run = services.training_run_start(
                base_version=version_named(options["base"], services.latest_model_version),  # type: ignore[arg-type]
                hyperparameters=training_options(options),
                processes=int(options["processes"]),  # type: ignore[call-overload]
                judgement_filter=JudgementFilter.from_inputs(
                    since=since,
                    min_agreement=float(options["min_agreement"]),  # type: ignore[arg-type]
                    exclude=list(options["exclude_annotator"]),  # type: ignore[call-overload]
                    **quality_options(options),
                ),
            )
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"training run {run.pk} queued at {datetime.now(UTC):%H:%M:%S}")
        if options["wait"]:
            wait(
                lambda: services.training_run_observe(run_id=run.pk),
                self.stdout,
                f"training run {run.pk}",
                deadline=wait_deadline(options),
            )
            self.stdout.write(run.base_version.__class__.objects.get(trained_by=run).name)



def _since(text: object) -> datetime | None:
    """``--since`` as a moment (a bare date is its midnight, UTC); a date that does not exist fails the command."""
    if not text:
        return None
    try:
        since = parse_datetime(str(text)) or parse_datetime(f"{text}T00:00:00")
    except ValueError:  # well formed but not in the calendar: 2026-13-45
        since = None
    if since is None:
        raise CommandError(f"--since {text!r}: use a date or a date and time")
    return since if since.tzinfo else since.replace(tzinfo=UTC)
