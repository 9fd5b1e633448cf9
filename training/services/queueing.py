"""Putting runs on the RQ queues: check Redis first, enqueue only after the run's row commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction

from training.models import GenerationRun, TrainingRun

# A failed job stays inspectable in RQ's registry for a week: long enough to read it after a weekend.
JOB_FAILURE_TTL_SECONDS = 7 * 24 * 3600
GPU_QUEUE = "gpu"


class QueueUnavailable(RuntimeError):
    """Redis cannot be reached, so a run cannot be started; nothing was created."""


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


def queue_check(*, name: str) -> None:
    """Raise ``QueueUnavailable`` naming Redis when the queue's server does not answer."""
    import django_rq

    try:
        django_rq.get_connection(name).ping()
    except _redis_errors() as exc:
        raise QueueUnavailable(
            f"Redis at {settings.REDIS_URL} cannot be reached ({exc}); start it (scripts/start does) and try again"
        ) from exc


def enqueue_after_commit(*, run: TrainingRun | GenerationRun, job: Callable[..., Any], queue: str) -> None:
    """Enqueue once the run's row is committed; if Redis fails then, remove the run and say why."""

    def enqueue() -> None:
        import django_rq

        try:
            rq_job = django_rq.get_queue(queue).enqueue(
                job, run.pk, job_timeout=settings.DUET_JOB_TIMEOUT, failure_ttl=JOB_FAILURE_TTL_SECONDS
            )
        except _redis_errors() as exc:
            _run_discard(run=run)
            raise QueueUnavailable(
                f"Redis at {settings.REDIS_URL} cannot be reached ({exc}); nothing was started"
            ) from exc
        type(run).objects.filter(pk=run.pk).update(rq_job_id=rq_job.id)
        run.rq_job_id = rq_job.id

    transaction.on_commit(enqueue, robust=False)


def _run_discard(*, run: TrainingRun | GenerationRun) -> None:
    """Remove a run that never reached its queue, with the rounds chained to it: nothing else would ever queue them."""
    with transaction.atomic():
        if isinstance(run, TrainingRun):
            GenerationRun.objects.filter(after_training=run).delete()
        type(run).objects.filter(pk=run.pk).delete()
