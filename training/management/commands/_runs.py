"""What the run commands share: naming a version, and waiting for a run while a worker does it."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.management.base import CommandError, OutputWrapper

from training.models import ModelVersion, RunStatus


def version_named(name: str | None, fallback: Callable[[], ModelVersion]) -> ModelVersion:
    if name is None:
        return fallback()
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        known = ", ".join(ModelVersion.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"no model version named {name!r} (known: {known})")
    return version


def wait(observe: Callable[[], object], out: OutputWrapper, label: str, poll_seconds: float = 2.0) -> object:
    """Poll until the run ends, printing its progress when it changes; fail the command if it did not succeed."""
    last = None
    while True:
        run = observe()
        line = f"{label}: {run.status} {run.progress_step}/{run.progress_total}"  # type: ignore[attr-defined]
        eta = getattr(run, "eta_seconds", None)
        if eta is not None and run.status == RunStatus.RUNNING:  # type: ignore[attr-defined]
            line += f", ETA {eta:.0f} s"
        if line != last:
            out.write(line)
            last = line
        if run.is_finished:  # type: ignore[attr-defined]
            if run.status != RunStatus.SUCCEEDED:  # type: ignore[attr-defined]
                raise CommandError(f"{label} {run.status}: {run.error}")  # type: ignore[attr-defined]
            return run
        time.sleep(poll_seconds)
