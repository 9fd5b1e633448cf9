from django.core.management.base import BaseCommand, CommandError, CommandParser

from training import services
from training.management.commands._runs import (
    add_sampling_arguments,
    add_training_arguments,
    add_wait_arguments,
    campaign_named,
    sampling_options,
    training_options,
    version_named,
    wait,
    wait_deadline,
)


class Command(BaseCommand):
    help = (
        "Turn the loop once: train on the judgements since the last run, then generate the next round with "
        "the new version against its parent. Prints both runs' ids; --wait waits for both."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base", default=None, help="version to train from (default: the newest)")
        parser.add_argument("--prompts", default="all", help="all | tag:TAG | unpaired")
        parser.add_argument("--max-prompts", type=int, default=None)
        # The sampling seed is left out: --seed is the training run's.
        add_sampling_arguments(parser, names=("max_new_tokens", "temperature", "top_p"))
        parser.add_argument(
            "--campaign",
            default=None,
            metavar="SLUG",
            help="train on this campaign's judgements since its last run; the next round answers its prompts into it",
        )
        parser.add_argument(
            "--include-flagged", action="store_true", help="train on flagged annotators' judgements too"
        )
        parser.add_argument(
            "--exclude-rushed", action="store_true", help="leave out votes faster than the campaign's threshold"
        )
        add_wait_arguments(parser, until="both runs end")
        add_training_arguments(parser)

    def handle(self, *args: object, **options: object) -> None:
        selection, _, tag = str(options["prompts"]).partition(":")
        generation = {"prompts": selection, "tag": tag, **sampling_options(options)}
        if options["max_prompts"]:
            generation["max_prompts"] = options["max_prompts"]
        try:
            train_run, gen_run = services.next_round_start(
                base_version=version_named(options["base"], services.latest_model_version),  # type: ignore[arg-type]
                hyperparameters=training_options(options),
                processes=int(options["processes"]),  # type: ignore[call-overload]
                generation=generation,
                campaign=campaign_named(options["campaign"]),
                include_flagged=bool(options["include_flagged"]),
                exclude_rushed=bool(options["exclude_rushed"]),
            )
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"training run {train_run.pk} and generation run {gen_run.pk} queued")
        if options["wait"]:
            # One limit for both runs: the generation cannot start before its training run ends.
            deadline = wait_deadline(options)
            wait(
                lambda: services.training_run_observe(run_id=train_run.pk),
                self.stdout,
                f"training run {train_run.pk}",
                deadline=deadline,
            )
            wait(
                lambda: services.generation_run_observe(run_id=gen_run.pk),
                self.stdout,
                f"generation run {gen_run.pk}",
                deadline=deadline,
            )
            gen_run.refresh_from_db()
            self.stdout.write(f"{gen_run.model_version.name}: {gen_run.comparisons_created} new comparisons queued")
