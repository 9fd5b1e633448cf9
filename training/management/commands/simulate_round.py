"""Run the loop unattended with a scripted annotator: judge → train → generate the next round → evaluate.

Training uses the product's defaults: hyper-parameters left unset resolve against the round's data size in
the engine, as a run started from the web does; ``--hyperparameters`` overrides them. Each round the new
version is evaluated the product's way too: an evaluation round (never trained on) pairs it with its parent
on the held-out prompts, the oracle judges it, and the report reads the same head-to-head the leaderboard
shows; the new version's held-out answers are also scored against the baseline. Both come as plain and
length-controlled win rates with mean lengths, since an oracle like ``shorter`` is pleased by length alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import F

from annotate import services as annotate_services
from annotate.filters import JudgementFilter
from annotate.formats import ImportFileError
from annotate.models import Comparison, Prompt, Purpose
from config.database_url import current_database_url
from training import oracles, services
from training.engine_settings import training_config_check
from training.head_to_head import evaluations_vs_parent
from training.leaderboard import leaderboard
from training.management.commands._reports import held_out_summary, leaderboard_report
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun
from training.selectors import first_completions

PROMPTS_FILE = Path(__file__).resolve().parents[2] / "demo" / "oracle_prompts.jsonl"

@dataclass
class RoundTimes:
    seed_generate: float = 0.0
    judge: float = 0.0
    train: float = 0.0
    generate: float = 0.0
    eval: float = 0.0
    run_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def loop(self) -> float:
        """One turn of the loop: pairs judged → trained → the next round's pairs generated and queued."""
        return self.judge + self.train + self.generate


class Command(BaseCommand):
    help = (
        "Simulate rounds of the loop with a scripted annotator (an oracle): it judges the open comparisons on "
        "the training prompts, the newest version is trained on them and generates the next round against its "
        "parent, and an evaluation round on held-out prompts measures the new version against its parent and "
        "the baseline (plain and length-controlled win rates). Needs a worker (manage.py rqworker gpu default) "
        "on the same database and Redis, or --worker to start one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--oracle", required=True, help=f"the annotator's preference: {', '.join(oracles.ORACLE_NAMES)}"
        )
        parser.add_argument("--pairs", type=int, default=64, help="comparisons judged (and prompts generated) a round")
        parser.add_argument("--rounds", type=int, default=1)
        parser.add_argument("--eval-prompts", type=int, default=64, help="held-out prompts scored after each round")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--base", default=None, help="version to start from (default: the newest)")
        parser.add_argument(
            "--baseline", default=None, help="version the oracle scores against (default: the root of --base's line)"
        )
        parser.add_argument("--prompts-file", default=str(PROMPTS_FILE), help="prompts to import first (idempotent)")
        parser.add_argument("--train-tag", default="oracle-train")
        parser.add_argument("--eval-tag", default="oracle-eval")
        parser.add_argument("--max-new-tokens", type=int, default=oracles.Sampling.max_new_tokens)
        parser.add_argument("--temperature", type=float, default=oracles.Sampling.temperature)
        parser.add_argument("--top-p", type=float, default=oracles.Sampling.top_p)
        parser.add_argument(
            "--hyperparameters",
            default="{}",
            help="JSON of TrainConfig fields; those left out resolve against each round's data, as in the product",
        )
        parser.add_argument(
            "--worker", action="store_true", help="start a burst worker (manage.py rqworker gpu default) as needed"
        )
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one run")

    def handle(self, *args: object, **options: Any) -> None:
        try:
            oracle = oracles.oracle_named(options["oracle"])
            overrides = json.loads(options["hyperparameters"])
            if not isinstance(overrides, dict):
                raise ValueError("--hyperparameters must be a JSON object")
            hyperparameters = training_config_check(overrides)
        except (ValueError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        if options["pairs"] < 1 or options["rounds"] < 1 or options["eval_prompts"] < 1:
            raise CommandError("--pairs, --rounds and --eval-prompts must be at least 1")
        self.options = options
        self.worker: subprocess.Popen[bytes] | None = None
        self._import_prompts(Path(options["prompts_file"]))
        current = self._version(options["base"]) if options["base"] else services.latest_model_version()
        baseline = self._version(options["baseline"]) if options["baseline"] else (current.ancestors() or [current])[-1]
        eval_prompts = oracles.held_out_prompts(tag=options["eval_tag"], limit=options["eval_prompts"])
        if not eval_prompts:
            raise CommandError(f"no prompts tagged {options['eval_tag']!r} to evaluate on")
        sampling = oracles.Sampling(
            temperature=options["temperature"],
            top_p=options["top_p"],
            max_new_tokens=options["max_new_tokens"],
            seed=options["seed"],
        )
        self.stdout.write(
            f"oracle {oracle.name} (user {oracles.oracle_username(oracle)}); start {current.name}, "
            f"baseline {baseline.name}; {options['pairs']} pairs a round; eval on {len(eval_prompts)} "
            f"{options['eval_tag']} prompts; hyper-parameters {json.dumps(hyperparameters)}"
        )
        self.sampled: dict[int, list[str]] = {}
        # A background job ignores SIGINT; make SIGTERM unwind too, so the worker started here is stopped.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        try:
            for number in range(1, options["rounds"] + 1):
                current = self._round(oracle, current, baseline, hyperparameters, number, eval_prompts, sampling)
        finally:
            self._stop_worker()
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(leaderboard_report(leaderboard()))

    # Steps ------------------------------------------------------------------------------

    def _round(
        self,
        oracle: oracles.Oracle,
        current: ModelVersion,
        baseline: ModelVersion,
        hyperparameters: dict[str, Any],
        number: int,
        eval_prompts: list[Prompt],
        sampling: oracles.Sampling,
    ) -> ModelVersion:
        """Judge, train, queue the next round; then measure the new version on the held-out prompts."""
        times = RoundTimes()
        label = f"round {number}"
        started = time.monotonic()
        if self._open_count(oracle) == 0:
            self._seed_round(current, times, label)
        new_version = self._one_round(oracle, current, hyperparameters, times, label, number)
        tick = time.monotonic()
        vs_parent = self._evaluation_round(oracle, new_version, eval_prompts, label)
        vs_baseline = oracles.oracle_compare(
            oracle=oracle,
            candidate=new_version.name,
            candidate_texts=self._texts(new_version, eval_prompts, sampling),
            baseline=baseline.name,
            baseline_texts=self._texts(baseline, eval_prompts, sampling),
            seed=self.options["seed"],
        )
        times.eval = time.monotonic() - tick
        self._report(label, {"parent": vs_parent, "baseline": vs_baseline}, times, time.monotonic() - started)
        return new_version

    def _import_prompts(self, path: Path) -> None:
        if not path.exists():
            raise CommandError(f"prompts file {path} does not exist")
        with path.open("rb") as stream:
            try:
                result = annotate_services.prompts_import(stream=stream, name=path.name)
            except ImportFileError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(f"prompts from {path.name}: {result.summary()}")

    def _version(self, name: str) -> ModelVersion:
        version = ModelVersion.objects.filter(name=name).first()
        if version is None:
            raise CommandError(f"no model version named {name!r}")
        return version

    def _open_count(self, oracle: oracles.Oracle) -> int:
        tag = self.options["train_tag"]
        user = oracles.oracle_user(oracle)
        open_comparisons = (
            Comparison.objects.filter(judgement_count__lt=F("target_judgements"))
            .exclude(judgements__annotator=user)
            .values_list("prompt__tags", flat=True)
        )
        return sum(1 for tags in open_comparisons if tag in (tags or []))

    def _generation_options(self, number: int) -> dict[str, Any]:
        return {
            "prompts": GenerationRun.Prompts.TAG,
            "tag": self.options["train_tag"],
            "max_prompts": self.options["pairs"],
            "max_new_tokens": self.options["max_new_tokens"],
            "temperature": self.options["temperature"],
            "top_p": self.options["top_p"],
            "seed": self.options["seed"] + number,
        }

    def _seed_round(self, version: ModelVersion, times: RoundTimes, label: str) -> None:
        """No open pairs to judge: generate the first ones with ``version`` (against its parent, or two samples)."""
        tick = time.monotonic()
        try:
            run = services.generation_run_start(model_version=version, **self._generation_options(0))
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self._start_worker()
        run = self._wait(GenerationRun, run.pk, f"{label}: first pairs, generation run {run.pk}")
        times.seed_generate = time.monotonic() - tick
        self.stdout.write(
            f"{label}: generated the first {run.comparisons_created} pairs with {version.name} "
            f"in {times.seed_generate:.1f} s"
        )

    def _one_round(
        self,
        oracle: oracles.Oracle,
        version: ModelVersion,
        hyperparameters: dict[str, Any],
        times: RoundTimes,
        label: str,
        number: int,
    ) -> ModelVersion:
        tick = time.monotonic()
        judged = oracles.oracle_judge_open(
            oracle=oracle,
            limit=self.options["pairs"],
            tag=self.options["train_tag"],
            seed=self.options["seed"] + number,
        )
        times.judge = time.monotonic() - tick
        if judged.judged == 0:
            raise CommandError(f"{label}: no open comparisons on {self.options['train_tag']} prompts to judge")
        counts = ", ".join(f"{choice} {n}" for choice, n in sorted(judged.choices.items()))
        self.stdout.write(f"{label}: {oracle.name} judged {judged.judged} pairs ({counts}) in {times.judge:.1f} s")

        tick = time.monotonic()
        try:
            train_run, gen_run = services.next_round_start(
                base_version=version, hyperparameters=hyperparameters, generation=self._generation_options(number)
            )
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self._start_worker()
        train_run = self._wait(TrainingRun, train_run.pk, f"{label}: training run {train_run.pk}")
        times.train = time.monotonic() - tick
        new_version = ModelVersion.objects.get(trained_by=train_run)
        times.run_seconds["train"] = train_run.duration_seconds or 0.0
        self.stdout.write(
            f"{label}: trained {new_version.name} on {train_run.dataset_rows} pairs, "
            f"{train_run.progress_step} steps, in {times.train:.1f} s "
            f"(the run itself {times.run_seconds['train']:.1f} s)"
            + (f"; {train_run.verdict}" if train_run.verdict else "")
        )
        if train_run.learned is False:
            self.stdout.write(f"{label}: the next round's pairs were not generated; the next round starts afresh")
            return new_version

        tick = time.monotonic()
        self._start_worker()
        gen_run = self._wait(GenerationRun, gen_run.pk, f"{label}: generation run {gen_run.pk}")
        times.generate = time.monotonic() - tick
        times.run_seconds["generate"] = gen_run.duration_seconds or 0.0
        self.stdout.write(
            f"{label}: {new_version.name} generated {gen_run.completions_created} completions, "
            f"{gen_run.comparisons_created} comparisons against {version.name} queued, in {times.generate:.1f} s "
            f"(the run itself {times.run_seconds['generate']:.1f} s)"
        )
        return new_version

    def _evaluation_round(
        self, oracle: oracles.Oracle, version: ModelVersion, prompts: list[Prompt], label: str
    ) -> oracles.EvalResult | None:
        """Pair ``version`` with its parent on the held-out prompts as ``evaluate_round`` does; the oracle judges.

        The result is the head-to-head the leaderboard shows; None when the round opened no comparison
        (every answer the same as the parent's).
        """
        options = {**self._generation_options(0), "tag": self.options["eval_tag"], "max_prompts": len(prompts)}
        try:
            run = services.generation_run_start(
                model_version=version, pairing=GenerationRun.Pairing.PARENT, purpose=Purpose.EVALUATION, **options
            )
        except (services.QueueUnavailable, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self._start_worker()
        run = self._wait(GenerationRun, run.pk, f"{label}: evaluation round {run.pk}")
        if run.comparisons_created:
            oracles.oracle_judge_open(
                oracle=oracle, limit=run.comparisons_created, tag=self.options["eval_tag"], seed=self.options["seed"]
            )
        judge = oracles.oracle_username(oracle)
        found = evaluations_vs_parent(judgement_filter=JudgementFilter(), seed=self.options["seed"]).get(version.pk, [])
        head = next((h for h in found if h.judge == judge), None)
        if head is None or version.parent is None:
            return None
        return oracles.EvalResult(
            candidate=version.name,
            baseline=version.parent.name,
            wins=head.record.wins,
            losses=head.record.losses,
            ties=head.record.ties,
            candidate_mean_chars=head.mean_chars,
            baseline_mean_chars=head.parent_mean_chars,
            length_controlled=head.length_controlled,
        )

    def _texts(self, version: ModelVersion, prompts: list[Prompt], sampling: oracles.Sampling) -> list[str]:
        """``version``'s held-out answers: those its evaluation rounds stored, else sampled here (once)."""
        stored = first_completions(version=version, prompts=prompts)
        if all(p.id in stored for p in prompts):
            return [stored[p.id].text for p in prompts]
        if version.pk not in self.sampled:
            self.sampled[version.pk] = oracles.sample_texts(version, prompts, sampling)
        return self.sampled[version.pk]

    def _report(
        self, label: str, results: dict[str, oracles.EvalResult | None], times: RoundTimes, total: float
    ) -> None:
        for against, result in results.items():
            line = held_out_summary(result) if result is not None else "no comparisons (the same answers as the parent)"
            self.stdout.write(f"{label}: held-out vs {against}: {line}")
        seed = f"first pairs {times.seed_generate:.1f} s, " if times.seed_generate else ""
        self.stdout.write(
            f"{label}: wall time {seed}judge {times.judge:.1f} s, train {times.train:.1f} s, "
            f"generate {times.generate:.1f} s, eval {times.eval:.1f} s; "
            f"loop (judge+train+generate) {times.loop:.1f} s; total {total:.1f} s"
        )

    # Runs and the worker ----------------------------------------------------------------

    def _wait(self, model: type[TrainingRun] | type[GenerationRun], pk: int, label: str) -> Any:
        deadline = time.monotonic() + self.options["timeout"]
        while True:
            run = model.objects.get(pk=pk)
            if run.is_finished:
                if run.status != RunStatus.SUCCEEDED:
                    raise CommandError(f"{label} {run.status}: {run.error}")
                return run
            if self.worker is not None and self.worker.poll() is not None and run.status == RunStatus.QUEUED:
                # A burst worker leaves when the queue is empty; a chained run may be enqueued just after.
                self._start_worker()
            if time.monotonic() > deadline:
                raise CommandError(f"{label} did not end within {self.options['timeout']:.0f} s (is a worker running?)")
            time.sleep(0.5)

    def _start_worker(self) -> None:
        if not self.options["worker"] or (self.worker is not None and self.worker.poll() is None):
            return
        log = Path(settings.DUET_RUNS_DIR) / "simulate_round-worker.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": current_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "DUET_RUNS_DIR": str(settings.DUET_RUNS_DIR),
        }
        self.worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "gpu", "default", "--burst"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _stop_worker(self) -> None:
        """Stop the worker this command started (interrupted or failed): RQ takes a second SIGTERM as a cold stop."""
        if self.worker is None:
            return
        for _ in range(2):
            if self.worker.poll() is not None:
                return
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue

