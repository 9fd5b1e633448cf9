from django.core.management.base import BaseCommand, CommandError, CommandParser

from training import services
from training.management.commands._runs import (
    add_campaign_argument,
    add_sampling_arguments,
    add_wait_arguments,
    campaign_named,
    sampling_options,
    version_named,
    wait,
    wait_deadline,
)
from training.models import GenerationRun


class Command(BaseCommand):
    help = (
        "Queue a generation round (a worker samples it: manage.py rqworker gpu); its pairs join the "
        "annotators' queue as each chunk lands. Prints the run's id; --wait waits until it ends. "
        "--resume RUN queues a failed or cancelled round again for the prompts it had not reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default=None, help="model version (default: the newest)")
        parser.add_argument(
            "--prompts", default="all", help="all | new:DATE | tag:TAG | unpaired (prompts without an open comparison)"
        )
        parser.add_argument("--pairing", choices=GenerationRun.Pairing.values, default=None)
        parser.add_argument("--max-prompts", type=int, default=None)
        add_sampling_arguments(parser)
        add_campaign_argument(parser)
        parser.add_argument(
            "--resume", type=int, default=None, metavar="RUN", help="resume this failed or cancelled round"
        )
        add_wait_arguments(parser, until="the round ends")

    def handle(self, *args: object, **options: object) -> None:
        resume = options["resume"]
        run = self._resume(resume) if isinstance(resume, int) else self._start(options)
        if options["wait"]:
            done = wait(
                lambda: services.generation_run_observe(run_id=run.pk),
                self.stdout,
                f"generation run {run.pk}",
                deadline=wait_deadline(options),
            )
            self.stdout.write(f"{done.comparisons_created} new comparisons in the queue")  # type: ignore[attr-defined]

    def _resume(self, run_id: int) -> GenerationRun:
        run = GenerationRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no generation run {run_id}")
        try:
            services.generation_run_resume(run=run)
        except (services.QueueUnavailable, services.RunStateError) as exc:
            raise CommandError(str(exc)) from exc
        done = f"{run.progress_step} of {run.progress_total} prompts done"
        self.stdout.write(f"generation run {run.pk} queued again ({done})")
        return run

    def _start(self, options: dict[str, object]) -> GenerationRun:
        from django.utils.dateparse import parse_datetime

        selection, _, value = str(options["prompts"]).partition(":")
        since = None
        if selection == "new":
            since = parse_datetime(value) or parse_datetime(f"{value}T00:00:00+00:00")
            if since is None:
                raise CommandError(f"--prompts new:{value}: use a date, e.g. new:2026-11-25")
        try:
            run = services.generation_run_start(
                model_version=version_named(options["model"], services.latest_model_version),  # type: ignore[arg-type]
                prompts=selection,
                since=since,
                tag=value if selection == "tag" else "",
                pairing=options["pairing"],  # type: ignore[arg-type]
                max_prompts=options["max_prompts"],  # type: ignore[arg-type]
                campaign=campaign_named(options["campaign"]),
                **sampling_options(options),
            )
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"generation run {run.pk} queued")
        return run
