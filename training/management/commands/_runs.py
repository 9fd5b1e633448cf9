"""What the run commands share: the engine's options, naming a version or a campaign, and waiting for a run."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.core.management.base import CommandError, OutputWrapper

from annotate import services as annotate_services
from annotate.models import Campaign
from dpo_engine.config import GenerateConfig, TrainConfig, add_config_arguments, config_fields
from training.engine_settings import RUN_OWNED_TRAIN_FIELDS, SAMPLING_FIELDS
from training.models import ModelVersion, RunStatus

# The worker picks the device of a run it takes.
COMMAND_OWNED_TRAIN_FIELDS = RUN_OWNED_TRAIN_FIELDS | {"device"}


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """``TrainConfig``'s options that a run takes (only the ones typed reach the parsed options), and
    ``--processes``."""
    from django.conf import settings

    group = parser.add_argument_group("training (dpo_engine)")
    group.add_argument(
        "--processes", type=int, default=1, metavar="N",
        help=f"GPUs per run (processes), 1 to {settings.DUET_MAX_PROCESSES_PER_RUN}: more than one trains through "
        "torchrun on a worker with at least N GPUs (DUET_GPUS) (default: 1)",
    )
    add_config_arguments(group, TrainConfig, exclude=COMMAND_OWNED_TRAIN_FIELDS, only_given=True)


def training_options(options: dict[str, Any]) -> dict[str, Any]:
    return {spec.name: options[spec.name] for spec in config_fields(TrainConfig) if spec.name in options}


def add_sampling_arguments(parser: argparse.ArgumentParser, *, names: Sequence[str] = SAMPLING_FIELDS) -> None:
    """``GenerateConfig``'s sampling options ``names``; the ones not typed keep the engine's defaults."""
    group = parser.add_argument_group("sampling (dpo_engine)")
    excluded = {spec.name for spec in config_fields(GenerateConfig)} - set(names)
    add_config_arguments(group, GenerateConfig, exclude=excluded, only_given=True)


def sampling_options(options: dict[str, Any]) -> dict[str, Any]:
    return {name: options[name] for name in SAMPLING_FIELDS if name in options}


def version_named(name: str | None, fallback: Callable[[], ModelVersion]) -> ModelVersion:
    if name is None:
        return fallback()
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        known = ", ".join(ModelVersion.objects.values_list("name", flat=True)) or "none"
        raise CommandError(f"no model version named {name!r} (known: {known})")
    return version


def add_wait_arguments(parser: argparse.ArgumentParser, *, until: str) -> None:
    """``--wait`` and its limit: a command that waits must end even when no worker ever takes the run."""
    from django.conf import settings

    parser.add_argument("--wait", action="store_true", help=f"wait until {until}")
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=settings.DUET_JOB_TIMEOUT,
        metavar="SECONDS",
        help="give up waiting after this long (the run goes on); default: the longest a job may run",
    )


def wait_deadline(options: dict[str, Any]) -> float:
    return time.monotonic() + float(options["wait_timeout"])


def wait(
    observe: Callable[[], object], out: OutputWrapper, label: str, *, deadline: float, poll_seconds: float = 2.0
) -> object:
    """Poll until the run ends, printing its progress when it changes; fail the command if it did not succeed.

    Past ``deadline`` (``time.monotonic()``) the command fails and the run is left as it is.
    """
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
        if time.monotonic() >= deadline:
            raise CommandError(
                f"{label} is still {run.status} after the wait timeout; it goes on "  # type: ignore[attr-defined]
                "(is a worker running? `manage.py rqworker gpu default` runs one)"
            )
        time.sleep(poll_seconds)


def add_campaign_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--campaign",
        default=None,
        metavar="SLUG",
        help="answer this campaign's prompts and put the comparisons in it (default: every prompt, default campaign)",
    )


def campaign_named(slug: object) -> Campaign | None:
    """The campaign ``--campaign`` names, or None without one; an unknown slug is an error naming it."""
    if not slug:
        return None
    try:
        return annotate_services.campaign_resolve(slug=str(slug))
    except annotate_services.CampaignNotFound as exc:
        raise CommandError(f"--campaign: {exc}") from exc
