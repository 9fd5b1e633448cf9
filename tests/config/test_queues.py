"""The RQ set-up works against a real Redis: the service at REDIS_URL, or the embedded one."""

import os
import subprocess
import sys
from pathlib import Path

import django_rq
import pytest
import redis
from django.conf import settings

from config.embedded_redis import start_embedded_redis


def test_a_real_worker_runs_a_job_from_the_default_queue(private_queues: str):
    queue = django_rq.get_queue("default")
    job = queue.enqueue("math.factorial", 10)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "rqworker", "default", "--burst"],
            cwd=settings.BASE_DIR,
            env={**os.environ, "REDIS_URL": private_queues},
            check=True,
            timeout=120,
            capture_output=True,
        )
        job.refresh()
        assert job.get_status() == "finished"
        assert job.return_value() == 3628800
    finally:
        job.delete()


def test_gpu_queue_allows_day_long_jobs():
    assert django_rq.get_queue("gpu")._default_timeout >= 24 * 60 * 60


def test_embedded_redis_starts_on_a_unix_socket(tmp_path: Path):
    socket = Path("/tmp") / f"duet-test-{tmp_path.name}.sock"
    process = start_embedded_redis(socket)
    try:
        client = redis.Redis(unix_socket_path=str(socket))
        assert client.ping()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.skipif(not settings.REDIS_URL.startswith("redis://"), reason="needs the Redis service at REDIS_URL")
def test_redis_url_points_the_queues_at_the_service():
    assert django_rq.get_connection("default").ping()


def test_a_run_on_one_process_waits_on_gpu_and_one_on_n_on_gpu_x_n():
    from config.queues import gpu_queue

    assert [gpu_queue(n) for n in (1, 2, 8)] == ["gpu", "gpu-x2", "gpu-x8"]


def test_every_process_count_a_run_may_ask_for_has_its_queue():
    from config.queues import gpu_queue

    limit = settings.DUET_MAX_PROCESSES_PER_RUN
    assert {gpu_queue(n) for n in range(1, limit + 1)} <= set(settings.RQ_QUEUES)
    assert gpu_queue(limit + 1) not in settings.RQ_QUEUES


@pytest.mark.parametrize("processes", [0, -1, 9, True, 1.5, "2"])
def test_a_process_count_out_of_bounds_is_refused_naming_the_limit(processes, settings):
    from config.queues import processes_check

    settings.DUET_MAX_PROCESSES_PER_RUN = 8
    with pytest.raises(ValueError, match=r"processes \(GPUs per run\) must be an integer in \[1, 8\]"):
        processes_check(processes)


@pytest.mark.parametrize(("gpus", "names"), [
    (1, ["gpu", "default"]),
    (2, ["gpu-x2", "gpu", "default"]),
    (4, ["gpu-x4", "gpu-x3", "gpu-x2", "gpu", "default"]),
    (100, ["gpu-x8", "gpu-x7", "gpu-x6", "gpu-x5", "gpu-x4", "gpu-x3", "gpu-x2", "gpu", "default"]),
])  # fmt: skip
def test_a_worker_on_gpu_also_listens_on_the_runs_its_gpus_fit_largest_first(gpus, names, settings):
    from config.queues import worker_queue_names

    settings.DUET_MAX_PROCESSES_PER_RUN = 8
    assert worker_queue_names(["gpu", "default"], gpus=gpus) == names


def test_a_worker_not_on_gpu_takes_no_multi_gpu_runs():
    from config.queues import worker_queue_names

    assert worker_queue_names(["default"], gpus=4) == ["default"]


def test_duet_gpus_is_the_worker_s_gpu_count(settings):
    from config.queues import worker_gpus

    settings.DUET_GPUS = 3
    assert worker_gpus() == 3


def test_without_duet_gpus_a_host_has_the_cuda_devices_torch_sees_or_one(settings):
    import torch

    from config.queues import worker_gpus

    settings.DUET_GPUS = None
    assert worker_gpus() == max(torch.cuda.device_count(), 1)
