"""The worker's side of a training run: freeze the data, train with ``dpo_engine``, register the new version."""

from __future__ import annotations

import hashlib
import traceback
from pathlib import Path
from typing import Any

from django.db import transaction

from annotate import services as annotate_services
from annotate.filters import JudgementFilter
from training.engine_settings import train_spec
from training.evaluation import HELDOUT_MIN_PAIRS, MARGIN_TAIL_STEPS, Verdict, heldout_indices, learning_verdict
from training.models import RunStatus, TrainingMetric, TrainingRun
from training.services.versions import model_version_register, trained_version_name
from training.services.worker.engine import engine_train
from training.services.worker.generation_job import follow_up_generations
from training.services.worker.runtime import Heartbeat, heartbeat, run_claim, run_finish, run_log_append


def training_run_execute(*, run_id: int) -> None:
    """Freeze the run's data, train, and register the version it made (or record why not).

    A run that did not learn still registers its version, but the round chained to it is cancelled
    with the verdict: its samples would be the parent's, judged again.
    """
    if not run_claim(model=TrainingRun, run_id=run_id):
        return
    run = TrainingRun.objects.select_related("base_version").get(pk=run_id)
    try:
        with heartbeat(model=TrainingRun, run_id=run_id) as beat:
            result = _train(run, beat)
        if result.stopped:
            run_finish(run=run, status=RunStatus.CANCELLED, error="cancelled from the page")
            follow_up_generations(run=run, version=None)
            return
        verdict = _verdict(run, result)
        with transaction.atomic():
            version = model_version_register(
                name=trained_version_name(base=run.base_version, run=run),
                path=str(result.final_model_dir),
                parent=run.base_version,
                trained_by=run,
            )
            run_finish(
                run=run,
                status=RunStatus.SUCCEEDED,
                eval_before=result.eval_before,
                eval_after=result.eval_after,
                progress_step=result.steps,
                learned=verdict.learned,
                verdict=verdict.sentence,
            )
            # The run's frozen list is final now: none of its judgements may be undone any more.
            annotate_services.judgements_mark_trained(judgement_ids=run.judgements.values_list("id", flat=True))
            if verdict.learned:
                follow_up_generations(run=run, version=version)
            else:
                follow_up_generations(run=run, version=None, reason=verdict.sentence)
        run_log_append(run=run, line=f"registered model version {version.name}")
        run_log_append(run=run, line=verdict.sentence)
    except Exception as exc:
        run_finish(run=run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc())
        follow_up_generations(run=run, version=None)
        raise


def _train(run: TrainingRun, beat: Heartbeat) -> Any:
    from dpo_engine import TrainConfig

    if not run.dataset_path or not Path(run.dataset_path).exists():
        dataset_freeze(run=run)
        run_log_append(run=run, line=_heldout_note(run))
    if run.dataset_rows == 0:
        raise ValueError("there are no decided comparisons to train on: judge some pairs first")
    config = TrainConfig(
        data=run.dataset_path,
        eval_data=run.heldout_path or None,
        model=run.base_version.path,
        out=run.out_dir,
        resume=(Path(run.out_dir) / "checkpoints").exists(),
        **run.hyperparameters,
    )
    config.validate()
    return engine_train(config=config, run=run, beat=beat)


def _heldout_note(run: TrainingRun) -> str:
    total = run.dataset_rows + run.heldout_rows
    if run.heldout_rows:
        return (f"held out {run.heldout_rows} of {total} pairs to measure the run on; training on "
                f"{run.dataset_rows}")
    return (f"no held-out pairs: {total} pairs are fewer than {HELDOUT_MIN_PAIRS}, so whether the run learned is "
            "judged by its training margin")


def _verdict(run: TrainingRun, result: Any) -> Verdict:
    """The verdict on a finished run, from its held-out scores or the margins of its last stored steps."""
    newest = run.metrics.filter(split=TrainingMetric.Split.TRAIN).order_by("-step")[:MARGIN_TAIL_STEPS]
    margins = [m.values.get("rewards/margins") for m in reversed(newest)]
    return learning_verdict(
        eval_after=result.eval_after,
        heldout_rows=run.heldout_rows,
        train_margins=[m for m in margins if isinstance(m, int | float)],
    )


def dataset_freeze(*, run: TrainingRun) -> None:
    """Export the run's judgements once into its folder, hold out a seeded share, and record both files.

    ``dataset.jsonl`` gets the training pairs (its hash and rows are recorded), ``heldout.jsonl`` the
    held-out ones. The judgements recorded are the ones the export itself used, for both files, so the
    run's list cannot drift from what it trained and was measured on.
    """
    out = Path(run.out_dir)
    staging = out / ".export.jsonl"
    result = annotate_services.export_preferences(
        path=staging,
        fmt="jsonl",
        conversational=True,
        judgement_filter=JudgementFilter.from_json(run.dataset_filters),
    )
    lines = staging.read_text(encoding="utf-8").splitlines(keepends=True)
    held = set(heldout_indices(len(lines), seed=run.hyperparameters.get("seed", train_spec("seed").default)))
    path, heldout = out / "dataset.jsonl", out / "heldout.jsonl"
    path.write_text("".join(line for i, line in enumerate(lines) if i not in held), encoding="utf-8")
    if held:
        heldout.write_text("".join(lines[i] for i in sorted(held)), encoding="utf-8")
    staging.unlink()
    run.dataset_path = str(path)
    run.dataset_rows = len(lines) - len(held)
    run.dataset_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    run.heldout_path = str(heldout) if held else ""
    run.heldout_rows = len(held)
    run.save(update_fields=["dataset_path", "dataset_rows", "dataset_sha256", "heldout_path", "heldout_rows"])
    run.judgements.set(result.judgement_ids)

