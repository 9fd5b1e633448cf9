from django.core.management.base import BaseCommand, CommandError, CommandParser

from dpo_engine.config import add_config_arguments
from training import services
from training.management.commands._runs import version_named, wait
from training.management.commands.train_dpo import ENGINE_OWNED, _engine_fields


class Command(BaseCommand):
    help = (
        "Turn the loop once: train on the judgements since the last run, then generate the next round with "
        "the new version against its parent. Prints both runs' ids; --wait waits for both."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base", default=None, help="version to train from (default: the newest)")
        parser.add_argument("--prompts", default="all", help="all | tag:TAG | unpaired")
        parser.add_argument("--max-prompts", type=int, default=None)
        parser.add_argument("--max-new-tokens", type=int, default=256)
        parser.add_argument("--wait", action="store_true")
        add_config_arguments(parser.add_argument_group("training (dpo_engine)"), exclude=ENGINE_OWNED, only_given=True)

    def handle(self, *args: object, **options: object) -> None:
        selection, _, tag = str(options["prompts"]).partition(":")
        generation = {"prompts": selection, "tag": tag, "max_new_tokens": options["max_new_tokens"]}
        if options["max_prompts"]:
            generation["max_prompts"] = options["max_prompts"]
        try:
            train_run, gen_run = services.next_round_start(
                base_version=version_named(options["base"], services.latest_model_version),  # type: ignore[arg-type]
                hyperparameters={k: options[k] for k in _engine_fields() if k in options},
                generation=generation,
            )
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"training run {train_run.pk} and generation run {gen_run.pk} queued")
        if options["wait"]:
            wait(
                lambda: services.training_run_observe(run_id=train_run.pk), self.stdout, f"training run {train_run.pk}"
            )
            wait(
                lambda: services.generation_run_observe(run_id=gen_run.pk), self.stdout, f"generation run {gen_run.pk}"
            )
            gen_run.refresh_from_db()
            self.stdout.write(f"{gen_run.model_version.name}: {gen_run.comparisons_created} new comparisons queued")
