"""RQ jobs: primitive ids in, one service call. Enqueued by the services after their transaction commits.

``Worker`` is the RQ worker every ``manage.py rqworker`` runs (``RQ["WORKER_CLASS"]``): besides
taking jobs it fails the runs of dead workers, so that no deployment depends on ``serve`` for it, and a
worker told to listen on ``gpu`` also takes the multi-GPU runs its host has the GPUs for (``DUET_GPUS``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.db import DatabaseError, connections
from rq.worker import Worker as RQWorker

from config.queues import GPU_QUEUE, worker_gpus, worker_queue_names
from training import services
from training.services.control import REAP_EVERY_SECONDS

log = logging.getLogger(__name__)


def train(run_id: int) -> None:
    services.training_run_execute(run_id=run_id)


def generate(run_id: int) -> None:
    services.generation_run_execute(run_id=run_id)


def generate_shard(shard_id: int) -> None:
    services.generation_shard_execute(shard_id=shard_id)


class Worker(RQWorker):
    """An RQ worker that reaps stale runs as it starts and every ``REAP_EVERY_SECONDS`` after.

    RQ sends the worker's own heartbeat as it starts listening, then wakes an idle worker every
    ``dequeue_timeout`` and a busy one every ``job_monitoring_interval`` to send it again; both
    are shortened to the reaping interval and the reaping rides on that heartbeat, so no thread
    runs beside the fork.
    """

    def __init__(self, queues: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(_with_multi_gpu_queues(queues), *args, **kwargs)
        self.reaper_pid = os.getpid()
        self.job_monitoring_interval = min(self.job_monitoring_interval, REAP_EVERY_SECONDS)

    @property
    def dequeue_timeout(self) -> int:
        return min(super().dequeue_timeout, REAP_EVERY_SECONDS)

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        super().heartbeat(*args, **kwargs)
        self.reap()

    def reap(self) -> None:
        if os.getpid() != self.reaper_pid:
            return  # the work-horse heartbeats too; its job, not the reaper, owns its database connection
        try:
            if reaped := services.runs_reap_stale():
                log.warning("%d run(s) or shard(s) failed or queued again: their worker stopped answering", reaped)
        except DatabaseError:
            log.exception("could not look for runs of dead workers; trying again at the next heartbeat")
        finally:
            # The work-horse is a fork of this process: it must not inherit an open database connection.
            connections.close_all()


def _with_multi_gpu_queues(queues: Any) -> list[Any]:
    """The queues asked for, with ``gpu-x{N}``..``gpu-x2`` before ``gpu`` for a host of N GPUs."""
    import django_rq

    given = list(queues) if isinstance(queues, list | tuple) else [queues]
    by_name = {q if isinstance(q, str) else q.name: q for q in given}
    names = worker_queue_names(list(by_name), gpus=worker_gpus() if GPU_QUEUE in by_name else 1)
    return [by_name[name] if name in by_name else django_rq.get_queue(name) for name in names]
