"""The server under load: gunicorn serving ``config.wsgi`` with the bench settings."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bench.annotate_load.database import DATABASE_URL, HOST

ROOT = Path(__file__).resolve().parents[2]
# Persistent connections, one per worker thread, as production runs.
CONN_MAX_AGE_S = 600
# Longer than the client's keep-alive, so the client never reuses a closed socket.
KEEP_ALIVE_S = 30
# Workers get this long to finish their requests after SIGTERM; the run is over by then.
GRACEFUL_TIMEOUT_S = 5
# How long ``stop`` waits for gunicorn to exit after SIGTERM, then after SIGKILL.
STOP_WAIT_S = 15
KILL_WAIT_S = 5
# Starting gunicorn and importing Django takes seconds on 2 busy cores; a minute means it is stuck.
READY_TIMEOUT_S = 60.0
READY_POLL_S = 0.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Gunicorn:
    """gunicorn serving ``config.wsgi`` with the bench settings; ``stop`` ends it and its workers."""

    def __init__(self, *, port: int, workers: int, threads: int, log: Path) -> None:
        self.url = f"http://{HOST}:{port}"
        self.log = log
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": DATABASE_URL,
            "DATABASE_CONN_MAX_AGE": str(CONN_MAX_AGE_S),
            "DJANGO_DEBUG": "0",
        }
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--keep-alive",
            str(KEEP_ALIVE_S),
            "--graceful-timeout",
            str(GRACEFUL_TIMEOUT_S),
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log}")
                try:
                    async with session.get(f"{self.url}/api/bench/trivial") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(READY_POLL_S)
        raise RuntimeError(f"gunicorn was not ready after {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=KILL_WAIT_S)
