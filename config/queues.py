"""The RQ queues every app enqueues on: check Redis before writing, enqueue only after the row commits.

``gpu`` takes generation and one-process training; ``gpu-x{N}`` takes training runs on N processes (GPUs), which
only a worker with at least N GPUs (``DUET_GPUS``) listens on; ``default`` takes the rest (large exports). All are
named in ``settings.RQ_QUEUES``; what a job does lives in its app's ``jobs.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction

GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"
# The queue of runs on several processes: "gpu-x2" for 2.
_MULTI_GPU_QUEUE = "gpu-x{processes}"
# A failed job stays inspectable in RQ's registry for a week: long enough to read it after a weekend.
JOB_FAILURE_TTL_SECONDS = 7 * 24 * 3600


def gpu_queue(processes: int) -> str:
    """The queue of a training run on ``processes`` processes (GPUs): ``gpu`` for one, ``gpu-x{N}`` for N."""
    return GPU_QUEUE if processes == 1 else _MULTI_GPU_QUEUE.format(processes=processes)


def processes_check(processes: int) -> int:
    """Raise ``ValueError`` unless ``processes`` is a whole number of processes a run may ask for."""
    limit = settings.DUET_MAX_PROCESSES_PER_RUN
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= limit:
        raise ValueError(
            f"processes (GPUs per run) must be an integer in [1, {limit}] (DUET_MAX_PROCESSES_PER_RUN), "
            f"got {processes!r}"
        )
    return processes


def worker_gpus() -> int:
    """How many GPUs this host's worker has: ``DUET_GPUS``, else the CUDA devices torch sees, else 1.

    On a CPU host it is the number of gloo processes a run may start there. torch counts devices through NVML,
    which leaves CUDA uninitialised, so the work-horses this worker forks can still use it.
    """
    if settings.DUET_GPUS is not None:
        return settings.DUET_GPUS
    import torch

    return torch.cuda.device_count() or 1


def worker_queue_names(names: Sequence[str], *, gpus: int) -> list[str]:
    """``names`` with the multi-GPU queues this host can serve put before ``gpu``, the largest first.

    A worker with 4 GPUs told ``gpu default`` listens on ``gpu-x4 gpu-x3 gpu-x2 gpu default``: a run that needs
    all of them is not starved by a stream of one-GPU work.
    """
    largest = min(gpus, settings.DUET_MAX_PROCESSES_PER_RUN)
    extra = [gpu_queue(n) for n in range(largest, 1, -1)]
    out: list[str] = []
    for name in names:
        if name == GPU_QUEUE:
            out.extend(q for q in extra if q not in names)
        out.append(name)
    return out


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
