"""Processes a job starts: in a process group of their own that dies with the job, stopped as a whole.

A launcher such as ``torchrun`` puts each process it starts in a session of its own, so stopping the
launcher's group alone would not reach them: :class:`ChildGroup` remembers every process it has seen below
the launcher (with its start time, so a recycled pid is never hit) and kills them too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

_PR_SET_PDEATHSIG = 1


def process_parents() -> dict[int, int]:
    """Every live process's parent (from /proc; empty where there is none)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is not None and fields[0] not in ("Z", "X"):
            parents[int(stat.parent.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Live processes below ``pid`` (from /proc; empty where there is none)."""
    parents = process_parents()
    found: list[int] = []
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        found.extend(children)
        frontier = children
    return found


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return fields is not None and fields[0] not in ("Z", "X")


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None once the process is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return fields[19] if fields is not None and fields[0] not in ("Z", "X") else None  # field 22: starttime


class ChildGroup:
    """``args`` as a child of this process, leader of its own process group, with output to ``output``.

    The child gets SIGTERM when the thread that started it ends (``PR_SET_PDEATHSIG``: the job was killed),
    and leaving the ``with`` block kills it and everything seen below it, on every way out.
    """

    def __init__(self, args: Sequence[str], *, output: Path, env: Mapping[str, str]) -> None:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
        parent = os.getpid()

        def die_with_parent() -> None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the line above took effect
                os.kill(os.getpid(), signal.SIGTERM)

        with output.open("wb") as log:
            # preexec_fn only calls prctl: no lock another thread of the job could hold is taken in the child.
            self.process = subprocess.Popen(
                list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=dict(env),
                process_group=0, preexec_fn=die_with_parent,
            )
        self.seen: dict[int, str] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def watch(self) -> None:
        """Remember the processes below the child now, so they can be stopped after it is gone."""
        for pid in descendants(self.pid):
            if (started := _start_time(pid)) is not None:
                self.seen.setdefault(pid, started)

    def terminate(self) -> None:
        """SIGTERM to the child's group: a clean stop (``torchrun`` passes it on to its processes)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the child's group and every process seen below it that still runs, then reap the child."""
        if self.alive():
            self.watch()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid, started in self.seen.items():
            if _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> ChildGroup:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
