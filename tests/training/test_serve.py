"""``manage.py serve`` with real processes: a killed worker comes back, the web stays up, Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from training.management.commands._supervisor import descendants

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("transactional_db")]

# Django, gunicorn and an RQ worker start on a busy 2-core machine within this.
START_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"], ["X"])


class Serve:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path, wait_for: Callable[..., None]):
        self.process, self.port, self.log, self.wait_for = process, port, log, wait_for

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/accounts/login/", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def workers(self) -> list[int]:
        """The RQ workers serve started (a work-horse is a fork of its worker, one level further down)."""
        return [
            pid
            for pid in descendants(self.process.pid)
            if _ppid(pid) == self.process.pid and "rqworker" in _cmdline(pid)
        ]

    def started(self, name: str) -> list[int]:
        """The pids serve reported for ``name``, in order."""
        return [int(pid) for pid in re.findall(rf"^{name} started \(pid (\d+)\)$", self.output(), flags=re.M)]

    def horse(self, worker: int) -> int | None:
        """The worker's work-horse: RQ puts it in a process group of its own (its scheduler stays in the worker's)."""
        return next((pid for pid in descendants(worker) if _stat(pid)[2:3] == [str(pid)]), None)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ... (empty once the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _ppid(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


@pytest.fixture
def serve(private_queues: str, runs_dir: Path, tmp_path: Path, wait_for: Callable[..., None]) -> Iterator[Serve]:
    from django.conf import settings

    from config.database_url import current_database_url

    port = _free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "REDIS_URL": private_queues,
        "DUET_RUNS_DIR": str(runs_dir),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}", "--web-workers", "1"],
        cwd=settings.BASE_DIR, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    running = Serve(process, port, log, wait_for)
    wait_for(lambda: running.answers() and len(running.workers()) == 1, timeout=START_SECONDS, what="web and worker")
    yield running
    if process.poll() is None:
        for pid in [process.pid, *descendants(process.pid)]:
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)


def _enqueue_sleep() -> None:
    import django_rq

    django_rq.get_queue("gpu").enqueue(time.sleep, 600, job_timeout=900)


def test_a_killed_worker_is_restarted_while_the_web_keeps_serving(serve: Serve, wait_for: Callable[..., None]):
    _enqueue_sleep()
    [first] = serve.workers()
    wait_for(lambda: serve.horse(first) is not None, timeout=60, what="the work-horse")
    horse = serve.horse(first)
    assert horse is not None

    os.kill(first, signal.SIGKILL)  # as the kernel's out-of-memory killer does
    assert serve.answers(), "the web answers while the worker is down"
    wait_for(lambda: serve.started("worker")[-1] != first, timeout=START_SECONDS, what="a new worker")
    new_worker_alone = lambda: serve.workers() == serve.started("worker")[-1:]  # noqa: E731
    wait_for(new_worker_alone, timeout=30, what="the new worker alone, the old one's children gone")
    assert serve.answers()
    assert serve.process.poll() is None
    assert not _alive(horse), "the dead worker's work-horse was stopped with it"
    assert "worker (pid" in serve.output()
    assert "restarting in" in serve.output()


def test_sigint_stops_every_process_it_started_work_horses_included(serve: Serve, wait_for: Callable[..., None]):
    _enqueue_sleep()
    [worker] = serve.workers()
    wait_for(lambda: serve.horse(worker) is not None, timeout=60, what="the work-horse")
    started = descendants(serve.process.pid)
    assert len(started) >= 3, "web, worker and its work-horse"

    serve.process.send_signal(signal.SIGINT)
    assert serve.process.wait(timeout=60) == 0, serve.output()
    wait_for(lambda: not any(_alive(pid) for pid in started), timeout=10, what="every child to stop")


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_to_the_terminals_process_group_stops_the_embedded_redis_after_the_worker(
    tmp_path: Path, wait_for: Callable[..., None]
):
    # A terminal's Ctrl-C signals the whole foreground process group: a child left in serve's group
    # (as the embedded Redis once was) dies at once, and the worker still shutting down logs its loss.
    from django.conf import settings

    from config.database_url import current_database_url

    port = _free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=current_database_url(), DUET_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}", "--web-workers", "1"],
        cwd=settings.BASE_DIR, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    running = Serve(process, port, log, wait_for)
    try:
        wait_for(lambda: running.answers() and len(running.workers()) == 1, timeout=START_SECONDS, what="serve")
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, running.output()
    finally:
        if process.poll() is None:
            for pid in [process.pid, *descendants(process.pid)]:
                os.kill(pid, signal.SIGKILL)
    assert "Traceback" not in running.output()
    assert "could not connect to Redis" not in running.output()
