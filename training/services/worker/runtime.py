"""What every job of the worker shares: claiming a run, its heartbeat, its log, and finishing it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from training.models import GenerationRun, RunStatus, TrainingMetric, TrainingRun

# The run page shows the end of the log; older lines are dropped so the row stays small.
LOG_TAIL_CHARS = 8000
# Seconds a heartbeat thread waits for its last beat to finish when the job ends.
HEARTBEAT_JOIN_SECONDS = 5

Run = TrainingRun | GenerationRun


def run_claim(*, model: type[Run], run_id: int) -> bool:
    """Move a queued run to running; False if it was cancelled (or taken) meanwhile."""
    now = timezone.now()
    return bool(
        model.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
        )
    )


def run_finish(*, run: Run, status: str, **fields: Any) -> None:
    type(run).objects.filter(pk=run.pk).update(status=status, finished_at=timezone.now(), **fields)


def log_tail_append(tail: str, line: str) -> str:
    return (tail + line.rstrip() + "\n")[-LOG_TAIL_CHARS:]


def run_log_append(*, run: Run, line: str) -> None:
    """One line into the run's log tail at once (the worker is the only writer of it)."""
    run.log_tail = log_tail_append(run.log_tail, line)
    type(run).objects.filter(pk=run.pk).update(log_tail=run.log_tail)


@dataclass
class Heartbeat:
    """What a job's heartbeat vouches for: ``alive`` answers whether the work is still going on.

    The job's own thread by default; while the job waits on processes it launched, they are the work, and
    ``alive`` is theirs, so the heartbeat covers the children and stops with them.
    """

    alive: Callable[[], bool] = field(default=lambda: True)


@contextmanager
def heartbeat(*, model: type[Run], run_id: int) -> Iterator[Heartbeat]:
    """Beat every few seconds from a thread, so a long step never looks like a dead worker."""
    state = Heartbeat()

    def beat() -> None:
        if state.alive():
            model.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())

    with beating(beat, name=f"heartbeat-{model.__name__}-{run_id}"):
        yield state


@contextmanager
def beating(beat: Callable[[], None], *, name: str) -> Iterator[None]:
    """Call ``beat`` every ``DUET_HEARTBEAT_SECONDS`` from a thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(settings.DUET_HEARTBEAT_SECONDS):
            beat()
        close_old_connections()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_JOIN_SECONDS)


def metric_row(record: dict[str, Any]) -> tuple[str, int, dict[str, float]]:
    """A metrics record of the engine (a callback's or a ``metrics.jsonl`` line) as a stored row's split, step and
    values: numbers only, NaN left out (JSON columns cannot hold it)."""
    split = TrainingMetric.Split.EVAL if record.get("split") == "eval" else TrainingMetric.Split.TRAIN
    values = {k: v for k, v in record.items() if isinstance(v, int | float) and v == v}
    return split, int(record["step"]), values


class StepReporter:
    """The engine's callbacks for one training run, written to the database at most once per step.

    Metrics, progress, ETA, heartbeat and log lines are buffered and written together, in one
    transaction whose ``UPDATE … RETURNING`` also reads the cancel flag back; when steps are
    faster than ``DUET_PROGRESS_SECONDS`` the writes are throttled to that interval, so a
    cancel is seen within it. A checkpoint flushes too, so the stored curve reaches the step a
    resume starts from; ``flush`` also writes whatever is left when the run ends. The resolved schedule
    is written once, when the engine reports it before its first step.
    """

    def __init__(self, run: TrainingRun, *, interval: float | None = None) -> None:
        self.run = run
        self.interval = settings.DUET_PROGRESS_SECONDS if interval is None else interval
        self.metrics: dict[tuple[str, int], dict[str, float]] = {}
        self.progress: tuple[int, int, float | None] | None = None
        self.cancel_requested = False
        self.last_write = time.monotonic()
        # The log has writers beside the engine (the checkpoint uploader's thread): no line may be lost.
        self._log_lock = threading.Lock()

    def on_metrics(self, metrics: dict[str, Any]) -> None:
        """Buffer a training step's metrics, or a held-out evaluation's (``"split": "eval"``)."""
        split, step, values = metric_row(metrics)
        self.metrics[(split, step)] = values

    def on_schedule(self, schedule: dict[str, Any]) -> None:
        """Store what the engine resolved against the data, before its first step (the engine logs it too)."""
        self.run.schedule = schedule
        self.run.progress_total = int(schedule.get("total_steps") or self.run.progress_total)
        TrainingRun.objects.filter(pk=self.run.pk).update(schedule=schedule, progress_total=self.run.progress_total)

    def on_progress(self, step: int, total: int, eta: float | None) -> None:
        self.progress = (step, total, eta)

    def on_log(self, line: str) -> None:
        """Buffer a log line (thread-safe: the checkpoint uploader logs from its own thread)."""
        with self._log_lock:
            self.run.log_tail = log_tail_append(self.run.log_tail, line)

    def should_stop(self) -> bool:
        if time.monotonic() - self.last_write >= self.interval:
            self.flush()
        return self.cancel_requested

    def flush(self) -> None:
        """Write what is buffered and read the cancel flag, in one transaction."""
        self.last_write = time.monotonic()
        with transaction.atomic():
            if self.metrics:
                TrainingMetric.objects.bulk_create(
                    [
                        TrainingMetric(run=self.run, split=split, step=step, values=values)
                        for (split, step), values in self.metrics.items()
                    ],
                    update_conflicts=True,
                    unique_fields=["run", "split", "step"],
                    update_fields=["values"],
                )
            self.cancel_requested = self._run_update()
        self.metrics.clear()

    def _run_update(self) -> bool:
        step, total, eta = self.progress or (self.run.progress_step, self.run.progress_total, self.run.eta_seconds)
        table = connection.ops.quote_name(TrainingRun._meta.db_table)
        # RETURNING (PostgreSQL, SQLite ≥ 3.35) reads the flag in the same statement that writes the progress.
        sql = (
            f"UPDATE {table} SET progress_step = %s, progress_total = %s, eta_seconds = %s, "  # noqa: S608
            "heartbeat_at = %s, log_tail = %s WHERE id = %s RETURNING cancel_requested"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [step, total, eta, timezone.now(), self.run.log_tail, self.run.pk])
            row = cursor.fetchone()
        return bool(row and row[0])

    def callbacks(self) -> Any:
        from dpo_engine import TrainCallbacks

        return TrainCallbacks(
            on_metrics=self.on_metrics,
            on_schedule=self.on_schedule,
            on_progress=self.on_progress,
            should_stop=self.should_stop,
            on_log=self.on_log,
            # A resume starts from the newest checkpoint: the curve up to it must be stored before it exists.
            # Steps stored past it are written again by the resumed run (flush upserts).
            before_checkpoint=lambda step: self.flush(),
        )

