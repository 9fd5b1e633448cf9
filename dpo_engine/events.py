"""A run's callbacks as JSON lines in a file, for a caller that launched the engine as another process.

``python -m dpo_engine train --events PATH`` (under ``torchrun`` too) has rank 0 append one line per callback:
``{"event": "schedule" | "metrics" | "progress" | "log" | "before_checkpoint" | "checkpoint", ...}`` as they
happen, then ``{"event": "result", ...}`` with the :class:`~dpo_engine.trainer.TrainResult`, or
``{"event": "error", "message": ...}`` when the run refused its input. The caller follows the file with
:class:`EventReader` and hands each event to its own :class:`~dpo_engine.trainer.TrainCallbacks` with
:func:`dispatch`, so a launched run reports exactly as one in the caller's process does.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpo_engine.trainer import TrainCallbacks, TrainResult


class EventWriter:
    """Appends events to ``path``, each line flushed as it is written so a reader never waits on a buffer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"event": event, **fields}) + "\n")

    def callbacks(self, base: TrainCallbacks) -> TrainCallbacks:
        """``base`` (its ``should_stop``) with every reporting hook writing an event."""
        from dataclasses import replace

        return replace(
            base,
            on_schedule=lambda schedule: self.write("schedule", schedule=schedule),
            on_metrics=lambda metrics: self.write("metrics", metrics=metrics),
            on_progress=lambda step, total, eta: self.write("progress", step=step, total=total, eta=eta),
            on_log=lambda line: self.write("log", line=line),
            before_checkpoint=lambda step: self.write("before_checkpoint", step=step),
            on_checkpoint=lambda step, path: self.write("checkpoint", step=step, path=str(path)),
        )

    def result(self, result: TrainResult) -> None:
        fields = asdict(result)
        fields["out_dir"] = str(result.out_dir)
        fields["final_model_dir"] = str(result.final_model_dir) if result.final_model_dir else None
        self.write("result", **fields)

    def error(self, message: str) -> None:
        self.write("error", message=message)


class EventReader:
    """Reads the events appended to ``path`` since the last call (whole lines only; a missing file has none)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as source:
                source.seek(self.offset)
                chunk = source.read()
        except FileNotFoundError:
            return []
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]


def dispatch(event: dict[str, Any], callbacks: TrainCallbacks) -> None:
    """Hand a reporting event to the callback it came from (``result`` and ``error`` are the caller's to read)."""
    kind = event["event"]
    if kind == "schedule" and callbacks.on_schedule:
        callbacks.on_schedule(event["schedule"])
    elif kind == "metrics" and callbacks.on_metrics:
        callbacks.on_metrics(event["metrics"])
    elif kind == "progress" and callbacks.on_progress:
        callbacks.on_progress(event["step"], event["total"], event["eta"])
    elif kind == "log" and callbacks.on_log:
        callbacks.on_log(event["line"])
    elif kind == "before_checkpoint" and callbacks.before_checkpoint:
        callbacks.before_checkpoint(event["step"])
    elif kind == "checkpoint" and callbacks.on_checkpoint:
        callbacks.on_checkpoint(event["step"], Path(event["path"]))


def result_from_event(event: dict[str, Any]) -> TrainResult:
    """The :class:`~dpo_engine.trainer.TrainResult` a ``result`` event carries."""
    from dpo_engine.trainer import TrainResult

    fields = {k: v for k, v in event.items() if k != "event"}
    final = fields.pop("final_model_dir")
    return TrainResult(**{**fields, "out_dir": Path(fields["out_dir"]),
                          "final_model_dir": Path(final) if final else None})
