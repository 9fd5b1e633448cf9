from django.core.management.base import BaseCommand, CommandError, CommandParser

from training import services
from training.management.commands._runs import add_campaign_argument, campaign_named
from training.models import GenerationRun


class Command(BaseCommand):
    help = (
        "Queue the demo's first round: the default model writes two answers to each demo prompt, which become "
        "comparisons for the annotators. Does nothing when a generation round exists already."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tag", default="demo", help="prompts with this tag")
        parser.add_argument("--max-new-tokens", type=int, default=160)
        add_campaign_argument(parser)

    def handle(self, *args: object, **options: object) -> None:
        campaign = campaign_named(options["campaign"])
        if GenerationRun.objects.exists():
            self.stdout.write("a generation round exists already; not seeding another")
            return
        try:
            run = services.generation_run_start(
                model_version=services.default_model_version(),
                prompts=GenerationRun.Prompts.TAG,
                tag=str(options["tag"]),
                n=2,
                max_new_tokens=int(options["max_new_tokens"]),  # type: ignore[call-overload]
                campaign=campaign,
            )
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"generation run {run.pk} queued: the default model is writing the first round "
            f"(progress at /training/generations/{run.pk}/)"
        )
