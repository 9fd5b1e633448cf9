"""The worker's side of a training run: freeze the data, train with ``dpo_engine``, register the new version."""

from __future__ import annotations

import hashlib
import shutil
import traceback
from collections.abc import Callable
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
from training.services.worker.run_artifacts import (
    base_model_fetch,
    checkpoint_fetch,
    checkpoint_uploads,
    dataset_fetch,
    dataset_publish,
    final_model_publish,
    metrics_backfill,
    run_work_dir,
)
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
        name = trained_version_name(base=run.base_version, run=run)
        # The upload of the final model beats too: a large one takes longer than the reaper waits.
        with heartbeat(model=TrainingRun, run_id=run_id) as beat:
            result = _train(run, beat)
            if not result.stopped:
                ref = final_model_publish(final_dir=result.final_model_dir, name=name, log=_run_log(run))
        if result.stopped:
            run_finish(run=run, status=RunStatus.CANCELLED, error="cancelled from the page")
            follow_up_generations(run=run, version=None)
            return
        verdict = _verdict(run, result)
        with transaction.atomic():
            version = model_version_register(
                name=name,
                path=ref.uri,
                ref=ref,
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
    """Train in this host's folder for the run, uploading its checkpoints to the store as they are written."""
    config = _train_config(run)
    with checkpoint_uploads(run=run, work=Path(config.out), keep=config.keep_checkpoints, log=_run_log(run)):
        return engine_train(config=config, run=run, beat=beat)


def _train_config(run: TrainingRun) -> Any:
    """The engine's config for ``run`` on this host: its data frozen (or fetched) and its newest checkpoint
    fetched from the store into this host's folder for the run, so the engine resumes from it."""
    from dpo_engine import TrainConfig

    work = run_work_dir(run)
    work.mkdir(parents=True, exist_ok=True)
    log = _run_log(run)
    if not run.dataset_path:
        dataset_freeze(run=run, work=work)
        run_log_append(run=run, line=_heldout_note(run))
    if run.dataset_rows == 0:
        raise ValueError("there are no decided comparisons to train on: judge some pairs first")
    dataset, heldout = dataset_fetch(run=run, work=work, log=log)
    checkpoint_fetch(run=run, work=work, log=log)
    metrics_backfill(run=run, work=work, log=log)
    config = TrainConfig(
        data=str(dataset),
        eval_data=str(heldout) if heldout else None,
        model=base_model_fetch(run=run, log=log),
        out=str(work),
        resume=(work / "checkpoints").exists(),
        **run.hyperparameters,
    )
    config.validate()
    return config


def _run_log(run: TrainingRun) -> Callable[[str], None]:
    return lambda line: run_log_append(run=run, line=line)


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


def dataset_freeze(*, run: TrainingRun, work: Path) -> None:
    """Export the run's judgements once into ``work``, hold out a seeded share, publish both files to the store.

    ``dataset.jsonl`` gets the training pairs (its hash and rows are recorded), ``heldout.jsonl`` the
    held-out ones; the run records their store URIs. The judgements recorded are the ones the export
    itself used, for both files, so the run's list cannot drift from what it trained and was measured on.
    """
    # Never trained yet: checkpoints here are a leftover of a reset database's run of the same id.
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    staging = work / ".export.jsonl"
    result = annotate_services.export_preferences(
        path=staging,
        fmt="jsonl",
        conversational=True,
        judgement_filter=JudgementFilter.from_json(run.dataset_filters),
    )
    lines = staging.read_text(encoding="utf-8").splitlines(keepends=True)
    held = set(heldout_indices(len(lines), seed=run.hyperparameters.get("seed", train_spec("seed").default)))
    path, heldout = work / "dataset.jsonl", work / "heldout.jsonl"
    path.write_text("".join(line for i, line in enumerate(lines) if i not in held), encoding="utf-8")
    if held:
        heldout.write_text("".join(lines[i] for i in sorted(held)), encoding="utf-8")
    staging.unlink()
    run.dataset_path, run.heldout_path = dataset_publish(run=run, dataset=path, heldout=heldout if held else None)
    run.dataset_rows = len(lines) - len(held)
    run.dataset_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    run.heldout_rows = len(held)
    run.save(update_fields=["dataset_path", "dataset_rows", "dataset_sha256", "heldout_path", "heldout_rows"])
    run.judgements.set(result.judgement_ids)
