"""How ``serve`` keeps its processes up: restart what dies (with back-off), stop everything it started.

``serve`` makes itself a child subreaper, so whatever a child leaves behind (an RQ work-horse whose
worker was killed) is re-parented to ``serve`` instead of init: it can always be found and stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.core.management.base import OutputWrapper

from training.services.worker.children import descendants, process_parents

# Restart delays double from the first to the last, so a process that dies at once (a bad setting,
# Redis gone) is retried calmly instead of in a busy loop.
FIRST_RESTART_DELAY = 1.0
LAST_RESTART_DELAY = 60.0
# A process that ran this long before it died was healthy: its next restart waits the first delay again.
HEALTHY_AFTER_SECONDS = 60.0
# How long a process may take to stop after SIGTERM before it and what it started are killed.
STOP_GRACE_SECONDS = 15.0
# RQ takes a second SIGTERM as "cold shutdown: kill the work-horse", but ignores one within a second of the first.
SECOND_SIGNAL_AFTER = 1.5

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def become_subreaper() -> None:
    """Orphans of our children become ours (Linux; elsewhere a no-op)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _child_setup() -> None:
    # A child of its own process group (Ctrl-C reaches serve alone, which stops the children in
    # order) that gets SIGTERM if serve itself is killed.
    os.setpgid(0, 0)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    # preexec_fn is safe here: serve runs no threads that could hold a lock across the fork.
    return subprocess.Popen(args, preexec_fn=_child_setup)


def _reap_orphans(supervised: set[int]) -> None:
    """Collect exited orphans re-parented to us; supervised children are left to their ``Popen.poll``."""
    while True:
        try:
            exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if exited is None or exited.si_pid in supervised:
            return
        os.waitpid(exited.si_pid, 0)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _exits_within(process: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


@dataclass
class Child:
    """One supervised process: how to start it, how to stop it, and its restart state."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    delay: float = FIRST_RESTART_DELAY


class Supervisor:
    def __init__(self, out: OutputWrapper) -> None:
        self.out = out
        self.children: list[Child] = []

    def add(self, child: Child) -> None:
        self.children.append(child)
        self._start(child)

    def _start(self, child: Child) -> None:
        child.process = child.start()
        child.started_at = time.monotonic()
        child.restart_at = None
        self.out.write(f"{child.name} started (pid {child.process.pid})")

    def tick(self) -> None:
        """Notice children that died (stop what they left behind, plan a restart) and restart those due."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None and child.process is not None and child.process.poll() is not None:
                self._died(child, now)
            elif child.restart_at is not None and now >= child.restart_at:
                try:
                    self._start(child)
                except Exception as exc:  # whatever stops a restart, the next one is planned
                    self.out.write(f"{child.name} did not start ({exc}); trying again in {child.delay:g} s")
                    child.restart_at = now + child.delay
                    child.delay = min(child.delay * 2, LAST_RESTART_DELAY)
        _reap_orphans(self._supervised_pids())

    def _died(self, child: Child, now: float) -> None:
        assert child.process is not None
        lived = now - child.started_at
        if lived >= HEALTHY_AFTER_SECONDS:
            child.delay = FIRST_RESTART_DELAY
        # A work-horse must not outlive its worker: it would hold the GPU beside the next worker's job.
        _kill(self._orphans())
        code = child.process.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        self.out.write(f"{child.name} (pid {child.process.pid}) {how} after {lived:.0f} s; "
                       f"restarting in {child.delay:g} s")  # fmt: skip
        child.restart_at = now + child.delay
        child.delay = min(child.delay * 2, LAST_RESTART_DELAY)

    def _supervised_pids(self) -> set[int]:
        return {c.process.pid for c in self.children if c.process is not None}

    def _orphans(self) -> list[int]:
        supervised = self._supervised_pids()
        orphans = [pid for pid, parent in process_parents().items() if parent == os.getpid() and pid not in supervised]
        return orphans + [pid for orphan in orphans for pid in descendants(orphan)]

    def stop(self) -> None:
        """Stop every child in reverse start order, then kill whatever is left below serve."""
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            below = descendants(process.pid)
            for number, sig in enumerate(child.stop_signals):
                if number and _exits_within(process, SECOND_SIGNAL_AFTER):
                    break
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.out.write(f"{child.name} (pid {process.pid}) did not stop in {STOP_GRACE_SECONDS:g} s; killing it")
                process.kill()
                process.wait()
            _kill(below)
        leftover = descendants(os.getpid())
        _kill(leftover)
        for pid in leftover:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
