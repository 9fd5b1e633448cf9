"""A training run's files travel through the artifact store, so that a worker on any host can run or resume it.

"Hosts" are worker processes with their own ``DUET_RUNS_DIR``, ``DUET_CACHE`` and ``DUET_VAR_DIR``; they share
PostgreSQL, Redis and the store (a ``file://`` folder, or S3 on a real moto server) and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from django.test import override_settings

from tests.conftest import Worker
from tests.training.factories import judged_preferences
from training import selectors, services
from training.artifacts import artifact_store
from training.models import ModelVersion, RunStatus, TrainingRun
from training.services.versions import model_version_local_path

pytestmark = pytest.mark.usefixtures("private_queues")

FAST = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "warmup_steps": 0,
    "batch_size": 2,
    "grad_accum": 1,
    "epochs": 2,
    "max_length": 128,
    "max_prompt_length": 64,
    "save_every": 1,
}


def _ended(run: TrainingRun) -> bool:
    run.refresh_from_db()
    return run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def _host_env(artifacts, root: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """What a worker host has of its own: var dir and cache; the store is the one every host shares."""
    return {**artifacts.env, "DUET_CACHE": str(root / "cache"), "DUET_VAR_DIR": str(root / "var")}


def _read(uri: str) -> bytes:
    with artifact_store().open(uri) as fh:
        return bytes(fh.read())


def _names(uris: list[str]) -> list[str]:
    return [uri.rsplit("/", 1)[-1] for uri in uris]


@pytest.mark.timeout(300)
def test_a_run_s_dataset_checkpoints_metrics_and_model_land_in_the_store(
    artifacts, tiny_version, worker, wait_for, tmp_path
):
    judged_preferences(6)
    run = services.training_run_start(base_version=tiny_version, hyperparameters=FAST)
    worker.start(burst=True, env=_host_env(artifacts, tmp_path / "host-a"))
    wait_for(lambda: _ended(run), what="the run to end")
    assert run.status == RunStatus.SUCCEEDED, run.traceback or worker.output()
    store = artifact_store()
    assert run.out_dir == store.uri(f"runs/train-{run.pk}")
    assert run.dataset_path == f"{run.out_dir}/dataset.jsonl"
    assert hashlib.sha256(_read(run.dataset_path)).hexdigest() == run.dataset_sha256
    # 6 pairs / 2 per step x 2 epochs: a checkpoint after steps 1-5 (the last step saves final/); the store
    # keeps the newest two, as the engine does.
    stored = _names(store.list_dirs(f"runs/train-{run.pk}/checkpoints"))
    assert stored[-1] == "step-00000005" and len(stored) <= 2, stored
    assert selectors.newest_checkpoint_step(run) == 5
    curve = [json.loads(line) for line in _read(f"{run.out_dir}/metrics.jsonl").decode().splitlines()]
    assert [r["step"] for r in curve if r["split"] == "train"] == list(range(1, 7))
    assert re.search(rf"uploaded checkpoint step-00000005 \(\d[\d.]* [kMG]?B\) to {re.escape(run.out_dir)}/", run.log_tail)
    version = ModelVersion.objects.get(trained_by=run)
    assert version.store_url == store.uri(f"models/{version.name}")
    assert version.content_hash == store.ref(version.store_url).content_hash
    assert f"uploaded model {version.name}" in run.log_tail
    assert (model_version_local_path(version) / "config.json").exists()


@pytest.mark.timeout(420)
@override_settings(DUET_HEARTBEAT_TIMEOUT=3)
def test_a_run_killed_on_one_host_resumes_on_another_from_its_uploaded_checkpoint(
    file_artifacts, tiny_version, worker, wait_for, tmp_path
):
    judged_preferences(8)
    # No per-step log lines: the log's tail must keep the lines that say what was fetched and resumed.
    hyperparameters = {**FAST, "batch_size": 1, "epochs": 8, "log_every": 1000}
    run = services.training_run_start(base_version=tiny_version, hyperparameters=hyperparameters)
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    worker.runs_dir = host_a / "runs"
    worker.start(env=_host_env(file_artifacts, host_a))
    stored = lambda: artifact_store().list_dirs(f"runs/train-{run.pk}/checkpoints")  # noqa: E731
    wait_for(lambda: run.refresh_from_db() or (run.progress_step >= 3 and bool(stored())), what="an upload")
    worker.kill()
    wait_for(lambda: services.training_run_observe(run_id=run.pk).status == RunStatus.FAILED, timeout=30,
             what="the run to be failed")
    uploaded = selectors.newest_checkpoint_step(run)
    assert uploaded is not None and uploaded >= 1

    services.training_run_resume(run=run)
    other = Worker(host_b / "runs", tmp_path / "worker-b.log")
    try:
        other.start(burst=True, env=_host_env(file_artifacts, host_b))
        wait_for(lambda: _ended(run), timeout=300, what="the resumed run")
    finally:
        other.stop()
    assert run.status == RunStatus.SUCCEEDED, run.traceback or other.output()
    assert f"fetched dataset.jsonl" in run.log_tail
    assert re.search(rf"fetched checkpoint step-{uploaded:08d} \(\d[\d.]* [kMG]?B\) from ", run.log_tail)
    resumed = re.search(r"resumed from (\S+) at step (\d+)/(\d+)", run.log_tail)
    assert resumed is not None, run.log_tail
    assert resumed[1].startswith(str(host_b / "runs")), "host B trained in a folder of its own"
    assert int(resumed[2]) == uploaded, "it continued from the uploaded checkpoint, not from step 0"
    steps = list(run.metrics.filter(split="train").values_list("step", flat=True))
    assert steps == list(range(1, run.progress_total + 1)), "the curve continues without a gap"
    curve = [json.loads(line) for line in (host_b / "runs" / f"train-{run.pk}" / "metrics.jsonl").open()]
    assert [r["step"] for r in curve if r["split"] == "train"] == steps, "host B's file keeps host A's steps"
    assert run.resumed_count == 1
