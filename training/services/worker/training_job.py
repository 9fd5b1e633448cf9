"""The worker's side of a training run: freeze the data, train with ``dpo_engine``, register the new version."""

from __future__ import annotations

import hashlib
import traceback
from pathlib import Path
from typing import Any

from django.db import transaction

from annotate import services as annotate_services
from annotate.filters import JudgementFilter
from training.models import RunStatus, TrainingRun
from training.services.versions import model_version_register, trained_version_name
from training.services.worker.generation_job import follow_up_generations
from training.services.worker.runtime import StepReporter, heartbeat, run_claim, run_finish, run_log_append

# Warm-up as a share of the steps when the data is too small for the configured warm-up.
SMALL_DATA_WARMUP_SHARE = 0.1


def training_run_execute(*, run_id: int) -> None:
    """Freeze the run's data, train, and register the version it made (or record why not)."""
    if not run_claim(model=TrainingRun, run_id=run_id):
        return
    run = TrainingRun.objects.select_related("base_version").get(pk=run_id)
    try:
        with heartbeat(model=TrainingRun, run_id=run_id):
            result = _train(run)
        if result.stopped:
            run_finish(run=run, status=RunStatus.CANCELLED, error="cancelled from the page")
            follow_up_generations(run=run, version=None)
            return
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
            )
            follow_up_generations(run=run, version=version)
        run_log_append(run=run, line=f"registered model version {version.name}")
    except Exception as exc:
        run_finish(run=run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc())
        follow_up_generations(run=run, version=None)
        raise


def _train(run: TrainingRun) -> Any:
    from dpo_engine import TrainConfig, train

    if not run.dataset_path or not Path(run.dataset_path).exists():
        dataset_freeze(run=run)
    if run.dataset_rows == 0:
        raise ValueError("there are no decided comparisons to train on: judge some pairs first")
    used, note = small_data_schedule(run.hyperparameters, run.dataset_rows)
    if note:
        run_log_append(run=run, line=note)
    config = TrainConfig(
        data=run.dataset_path,
        model=run.base_version.path,
        out=run.out_dir,
        resume=(Path(run.out_dir) / "checkpoints").exists(),
        **used,
    )
    config.validate()
    reporter = StepReporter(run)
    try:
        return train(config, callbacks=reporter.callbacks())
    finally:
        reporter.flush()


def dataset_freeze(*, run: TrainingRun) -> None:
    """Export the run's judgements once into its folder; record the file, its hash, rows and judgements.

    The judgements recorded are the ones the export itself used, so the run's list cannot drift
    from its file.
    """
    path = Path(run.out_dir) / "dataset.jsonl"
    result = annotate_services.export_preferences(
        path=path,
        fmt="jsonl",
        conversational=True,
        judgement_filter=JudgementFilter.from_json(run.dataset_filters),
    )
    run.dataset_path = str(path)
    run.dataset_rows = result.rows
    run.dataset_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    run.save(update_fields=["dataset_path", "dataset_rows", "dataset_sha256"])
    run.judgements.set(result.judgement_ids)


def small_data_schedule(hyperparameters: dict[str, Any], rows: int) -> tuple[dict[str, Any], str]:
    """The paper's batch of 64 and 150 warm-up steps assume thousands of pairs; scale them to a small set.

    Returns the settings actually used and a note saying what was scaled (shown on the run page).
    """
    from dpo_engine.config import TrainConfig

    used = dict(hyperparameters)
    defaults = TrainConfig(data="-")
    batch = used.get("batch_size", defaults.batch_size) * used.get("grad_accum", defaults.grad_accum)
    epochs = used.get("epochs", defaults.epochs)
    steps = max(1, rows // batch) * epochs
    warmup = used.get("warmup_steps", defaults.warmup_steps)
    notes = []
    if warmup >= steps:
        used["warmup_steps"] = max(1, int(steps * SMALL_DATA_WARMUP_SHARE))
        notes.append(f"warm-up scaled from {warmup} to {used['warmup_steps']} steps (10% of {steps})")
    return used, "; ".join(notes)

