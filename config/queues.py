"""The RQ queues every app enqueues on: check Redis before writing, enqueue only after the row commits.

``gpu`` takes training and generation; ``default`` takes the rest (large exports). Both are named in
``settings.RQ_QUEUES``; what a job does lives in its app's ``jobs.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction

GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"
# A failed job stays inspectable in RQ's registry for a week: long enough to read it after a weekend.
JOB_FAILURE_TTL_SECONDS = 7 * 24 * 3600


class QueueUnavailable(RuntimeError):
    """Redis cannot be reached, so the work cannot be queued; nothing was created."""


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError)


def queue_check(*, name: str) -> None:
    """Raise ``QueueUnavailable`` naming Redis when the queue's server does not answer."""
    import django_rq

    try:
        django_rq.get_connection(name).ping()
    except redis_errors() as exc:
        raise QueueUnavailable(
            f"Redis at {settings.REDIS_URL} cannot be reached ({exc}); start it (scripts/start does) and try again"
        ) from exc


def enqueue_on_commit(
    *,
    job: Callable[..., Any],
    args: tuple[Any, ...],
    queue: str,
    on_enqueued: Callable[[str], None],
    on_failure: Callable[[], None],
) -> None:
    """Enqueue ``job(*args)`` once the current transaction commits.

    ``on_enqueued`` gets the RQ job id. If Redis fails at that moment, ``on_failure`` undoes what the
    transaction created (nothing would ever run it) and ``QueueUnavailable`` reaches the caller.
    """

    def enqueue() -> None:
        import django_rq

        try:
            rq_job = django_rq.get_queue(queue).enqueue(
                job, *args, job_timeout=settings.DUET_JOB_TIMEOUT, failure_ttl=JOB_FAILURE_TTL_SECONDS
            )
        except redis_errors() as exc:
            on_failure()
            raise QueueUnavailable(
                f"Redis at {settings.REDIS_URL} cannot be reached ({exc}); nothing was started"
            ) from exc
        on_enqueued(rq_job.id)

    transaction.on_commit(enqueue, robust=False)
