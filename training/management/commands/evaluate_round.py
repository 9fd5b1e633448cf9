"""Queue an evaluation round: a version against its parent on the held-out prompts, judged but never trained on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
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


class Command(BaseCommand):
    help = (
        "Queue an evaluation round (a worker samples it: manage.py rqworker gpu): the version answers the "
        "prompts tagged DUET_EVAL_TAG, each answer paired with its parent's. The comparisons join the "
        "annotators' queue; their judgements are never trained on, and the leaderboard shows the version's "
        "win rate against its parent from them, plain and length-controlled. --wait waits until it ends."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default=None, help="model version (default: the newest)")
        parser.add_argument(
            "--prompts", type=int, default=None, help="at most this many held-out prompts, oldest first (default: all)"
        )
        add_sampling_arguments(parser)
        add_campaign_argument(parser)
        add_wait_arguments(parser, until="the round ends")

    def handle(self, *args: object, **options: Any) -> None:
        version = version_named(options["model"], services.latest_model_version)
        try:
            run = services.evaluation_round_start(
                model_version=version,
                max_prompts=options["prompts"],
                campaign=campaign_named(options["campaign"]),
                **sampling_options(options),
            )
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        tag = settings.DUET_EVAL_TAG
        label = f"evaluation round {run.pk}"
        self.stdout.write(f"{label} queued: {version.name} against its parent on the {tag!r} prompts")
        if options["wait"]:
            done = wait(
                lambda: services.generation_run_observe(run_id=run.pk),
                self.stdout,
                label,
                deadline=wait_deadline(options),
            )
            self.stdout.write(f"{done.comparisons_created} evaluation comparisons in the queue")  # type: ignore[attr-defined]
