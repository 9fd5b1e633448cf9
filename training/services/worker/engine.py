"""How a training job runs the engine: in the job's own process for one process, through ``torchrun`` for more.

Either way the run reports through one :class:`StepReporter`: a launched run's rank 0 appends its callbacks to
``OUT/events.jsonl`` (``python -m dpo_engine train --events``), which the job follows and hands on. Cancelling
sends SIGTERM to the launcher's process group (each process stops after its step and saves a checkpoint), and
SIGKILL to all of them after ``DUET_CANCEL_GRACE_SECONDS``; no process of the run outlives the job.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from training.models import TrainingRun
from training.services.worker.children import ChildGroup
from training.services.worker.runtime import Heartbeat, StepReporter

if TYPE_CHECKING:
    from dpo_engine import TrainConfig, TrainResult

# Where a launched run writes, inside its output folder (both start afresh at every launch).
EVENTS_FILE = "events.jsonl"
OUTPUT_FILE = "torchrun.log"
# How often the job reads the events, looks at the processes and writes (throttled) to the database.
POLL_SECONDS = 0.5
# How much of a failed launch's output its error quotes.
OUTPUT_TAIL_LINES = 25


class LaunchedRunFailed(RuntimeError):
    """The engine's processes ended without a result; the message quotes their error and last output."""


def engine_train(*, config: TrainConfig, run: TrainingRun, beat: Heartbeat | None = None) -> TrainResult:
    """Train ``config`` as ``run`` asks (on ``run.processes`` processes), reporting to the run's row.

    Returns the engine's result (``stopped`` when the run was cancelled); raises when the engine failed.
    """
    reporter = StepReporter(run)
    try:
        if run.processes == 1:
            from dpo_engine import train

            return train(config, callbacks=reporter.callbacks())
        return _train_launched(config, reporter, processes=run.processes, beat=beat or Heartbeat())
    finally:
        reporter.flush()


def torchrun_command(config: TrainConfig, *, processes: int, events: Path) -> list[str]:
    """``torchrun --standalone --nproc-per-node N -m dpo_engine train <config's options> --events PATH``."""
    from dpo_engine.config import config_to_args

    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "-m", "dpo_engine", "train", *config_to_args(config), f"--events={events}",
    ]  # fmt: skip


class _Relay:
    """The events of a launched run, handed to the reporter's callbacks; its result or error kept."""

    def __init__(self, path: Path, reporter: StepReporter) -> None:
        from dpo_engine.events import EventReader

        self.reader = EventReader(path)
        self.callbacks = reporter.callbacks()
        self.result: dict[str, Any] | None = None
        self.error: str | None = None

    def pump(self) -> None:
        from dpo_engine.events import dispatch

        for event in self.reader.read():
            if event["event"] == "result":
                self.result = event
            elif event["event"] == "error":
                self.error = event["message"]
            else:
                dispatch(event, self.callbacks)


def _train_launched(config: TrainConfig, reporter: StepReporter, *, processes: int, beat: Heartbeat) -> TrainResult:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    events = out / EVENTS_FILE
    events.unlink(missing_ok=True)
    relay = _Relay(events, reporter)
    reporter.on_log(f"launching {processes} processes through torchrun (output in {out / OUTPUT_FILE})")
    command = torchrun_command(config, processes=processes, events=events)
    own = beat.alive
    with ChildGroup(command, output=out / OUTPUT_FILE, env=_child_env()) as child:
        beat.alive = child.alive
        try:
            _follow(child, relay, reporter)
        finally:
            beat.alive = own  # the job's own work after the run (registering its version) beats again
    relay.pump()
    return _outcome(relay, reporter, out, child.process.returncode, processes)


def _follow(child: ChildGroup, relay: _Relay, reporter: StepReporter) -> None:
    """Relay the child's events until it ends; on a cancel, stop it cleanly, then for good after the grace."""
    deadline: float | None = None
    while child.alive():
        relay.pump()
        child.watch()
        if deadline is None and reporter.should_stop():
            reporter.on_log("cancel: stopping the training processes after their step")
            child.terminate()
            deadline = time.monotonic() + settings.DUET_CANCEL_GRACE_SECONDS
        elif deadline is not None and time.monotonic() > deadline:
            reporter.on_log(f"cancel: the processes did not stop in {settings.DUET_CANCEL_GRACE_SECONDS:g} s; "
                            "killing them")
            return  # leaving the ChildGroup block kills them
        time.sleep(POLL_SECONDS)


def _outcome(relay: _Relay, reporter: StepReporter, out: Path, code: int | None, processes: int) -> TrainResult:
    from dpo_engine import TrainResult
    from dpo_engine.events import result_from_event

    if relay.result is not None and (code == 0 or reporter.cancel_requested):
        return result_from_event(relay.result)
    if reporter.cancel_requested:
        step = reporter.progress[0] if reporter.progress else reporter.run.progress_step
        return TrainResult(out_dir=out, final_model_dir=None, steps=step, stopped=True)
    reason = relay.error or f"torchrun exited with code {code}"
    raise LaunchedRunFailed(
        f"the {processes} training processes failed: {reason}\n"
        f"last lines of their output ({out / OUTPUT_FILE}):\n{_tail(out / OUTPUT_FILE)}"
    )


def _tail(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as source:
            return "".join(deque(source, maxlen=OUTPUT_TAIL_LINES))
    except OSError as exc:
        return f"(unreadable: {exc})"


def _child_env() -> dict[str, str]:
    """The job's environment, with the project importable, output unbuffered and no progress bars in the log."""
    path = os.pathsep.join(p for p in (str(settings.BASE_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
