"""Putting runs on the RQ queues: ``config.queues`` with what a run needs (its job id kept, its chain removed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from config.queues import (
    GPU_QUEUE,
    JOB_FAILURE_TTL_SECONDS,
    QueueUnavailable,
    enqueue_on_commit,
    gpu_queue,
    processes_check,
    queue_check,
)
from training.models import GenerationRun, TrainingRun

__all__ = [
    "GPU_QUEUE",
    "JOB_FAILURE_TTL_SECONDS",
    "QueueUnavailable",
    "enqueue_after_commit",
    "gpu_queue",
    "processes_check",
    "queue_check",
]


def enqueue_after_commit(*, run: TrainingRun | GenerationRun, job: Callable[..., Any], queue: str) -> None:
    """Enqueue once the run's row is committed; if Redis fails then, remove the run and say why."""

    def enqueued(rq_job_id: str) -> None:
        type(run).objects.filter(pk=run.pk).update(rq_job_id=rq_job_id)
        run.rq_job_id = rq_job_id

    enqueue_on_commit(
        job=job, args=(run.pk,), queue=queue, on_enqueued=enqueued, on_failure=lambda: _run_discard(run=run)
    )


def _run_discard(*, run: TrainingRun | GenerationRun) -> None:
    """Remove a run that never reached its queue, with the rounds chained to it: nothing else would ever queue them."""
    with transaction.atomic():
        if isinstance(run, TrainingRun):
            GenerationRun.objects.filter(after_training=run).delete()
        type(run).objects.filter(pk=run.pk).delete()
