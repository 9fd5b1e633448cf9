"""What one phase measured: the clients' latencies and statuses, and where the CPU went."""

from __future__ import annotations

import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from pathlib import Path


@dataclass
class Phase:
    """What the clients saw in one phase; throughput counts only responses within the window."""

    name: str
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    in_window: Counter[str] = field(default_factory=Counter)
    # (judgement id, comparison id, annotator id) of every 201.
    accepted: list[tuple[int, int, int]] = field(default_factory=list)
    deadline: float = 0.0
    cpu: CpuUse | None = None
    # (comparison id, annotator id) of votes sent whose answer never came (timeout, error, or
    # cancelled at the drain limit): the server may have recorded them without a 201 reaching us.
    in_flight: set[tuple[int, int]] = field(default_factory=set)
    unanswered: set[tuple[int, int]] = field(default_factory=set)

    def give_up(self) -> None:
        self.unanswered |= self.in_flight
        self.in_flight.clear()

    def record(self, endpoint: str, status: int, latency: float, done_at: float) -> None:
        self.latencies[endpoint].append(latency)
        self.statuses[f"{endpoint} {status}"] += 1
        if done_at <= self.deadline:
            self.in_window[f"{endpoint} {status}"] += 1

    def rate(self, endpoint: str, status: int) -> float:
        return self.in_window[f"{endpoint} {status}"] / self.seconds

    def p(self, endpoint: str, q: float) -> float:
        """Nearest-rank percentile in milliseconds (NaN when there is no sample)."""
        values = sorted(self.latencies.get(endpoint, []))
        if not values:
            return math.nan
        return 1000.0 * values[max(0, math.ceil(q * len(values)) - 1)]


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent during a phase, from ``/proc``: who used the shared cores."""

    wall: float
    machine: float
    server: float
    postgres: float
    client: float

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


# Fields of /proc/<pid>/stat after the command name: utime and stime (user and system ticks).
STAT_UTIME = 11
STAT_STIME = 12
# Fields of /proc/stat's cpu line: idle and iowait ticks, the time no core was busy.
STAT_IDLE = 3
STAT_IOWAIT = 4


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[STAT_UTIME]) + int(fields[STAT_STIME])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_now(server_pid: int) -> CpuUse | None:
    """Where CPU time has gone so far; None where there is no Linux ``/proc`` to read."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        postgres = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _comm(p) == "postgres"]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = (sum(ticks) - ticks[STAT_IDLE] - ticks[STAT_IOWAIT]) / hz
    server = sum(_process_cpu(p) for p in [server_pid, *_children(server_pid)])
    client = sum(os.times()[:2])
    return CpuUse(time.perf_counter(), busy, server, sum(_process_cpu(p) for p in postgres), client)


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


@contextmanager
def cpu_meter(phase: Phase, server_pid: int) -> Iterator[None]:
    before = cpu_now(server_pid)
    yield
    after = cpu_now(server_pid)
    if before is not None and after is not None:
        phase.cpu = after - before
