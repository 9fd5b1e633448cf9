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
