"""The RQ worker every deployment runs fails the runs of dead workers, with no ``serve`` or ``watch_runs``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from training.models import RunStatus, TrainingRun

pytestmark = pytest.mark.usefixtures("private_queues")


def _running(version, *, beat_seconds_ago: float) -> TrainingRun:  # type: ignore[no-untyped-def]
    beat = timezone.now() - timedelta(seconds=beat_seconds_ago)
    return TrainingRun.objects.create(
        base_version=version, status=RunStatus.RUNNING, started_at=beat, heartbeat_at=beat, hyperparameters={}
    )


def _status(run: TrainingRun) -> str:
    run.refresh_from_db()
    return run.status


def test_a_worker_fails_a_run_whose_worker_died_as_it_starts(tiny_version, worker, wait_for, settings):
    run = _running(tiny_version, beat_seconds_ago=settings.DUET_HEARTBEAT_TIMEOUT + 60)
    worker.start()
    wait_for(lambda: _status(run) == RunStatus.FAILED, timeout=120, what="the worker to reap the run")
    assert "stopped answering" in run.error


def test_an_idle_worker_fails_a_run_that_goes_stale_while_it_waits(tiny_version, worker, wait_for):
    worker.start(env={"DUET_HEARTBEAT_TIMEOUT": "5"})
    wait_for(lambda: "Listening on" in worker.output(), timeout=120, what="the worker to start")
    run = _running(tiny_version, beat_seconds_ago=0)
    # 5 s to go stale, then at most one reaping interval (REAP_EVERY_SECONDS), with slack for a busy machine.
    wait_for(lambda: _status(run) == RunStatus.FAILED, timeout=45, what="the idle worker to reap the run")


def test_a_busy_worker_fails_a_run_that_goes_stale_while_its_job_runs(tiny_version, worker, wait_for):
    import time

    import django_rq

    django_rq.get_queue("gpu").enqueue(time.sleep, 120)
    worker.start(env={"DUET_HEARTBEAT_TIMEOUT": "5"})
    wait_for(lambda: "gpu: time.sleep(120)" in worker.output(), timeout=120, what="the worker to take the job")
    run = _running(tiny_version, beat_seconds_ago=0)
    # RQ's own check on a busy worker comes every 30 s; the reaping interval is far shorter.
    wait_for(lambda: _status(run) == RunStatus.FAILED, timeout=25, what="the busy worker to reap the run")


def test_the_worker_manage_py_rqworker_starts_listens_on_the_multi_gpu_queues_of_its_gpus(settings):
    import django_rq

    settings.DUET_GPUS = 3
    worker = django_rq.get_worker("gpu", "default")
    assert worker.queue_names() == ["gpu-x3", "gpu-x2", "gpu", "default"]
