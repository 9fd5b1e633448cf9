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

from config.artifacts import artifact_store
from tests.conftest import Worker
from tests.training.factories import FAST, judged_preferences
from training import selectors, services
from training.models import ModelVersion, RunStatus, TrainingMetric, TrainingRun
from training.services.versions import model_version_local_path
from training.services.worker.run_artifacts import (
    CheckpointUploader,
    checkpoint_fetch,
    checkpoint_uploads,
    metrics_backfill,
)

pytestmark = pytest.mark.usefixtures("private_queues")



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
    assert stored[-1] == "step-00000005", stored
    assert len(stored) <= 2, stored
    assert selectors.newest_checkpoint_step(run) == 5
    curve = [json.loads(line) for line in _read(f"{run.out_dir}/metrics.jsonl").decode().splitlines()]
    assert [r["step"] for r in curve if r["split"] == "train"] == list(range(1, 7))
    uploaded = rf"uploaded checkpoint step-00000005 \(\d[\d.]* [kMG]?B\) to {re.escape(run.out_dir)}/checkpoints/"
    assert re.search(uploaded, run.log_tail), run.log_tail
    version = ModelVersion.objects.get(trained_by=run)
    assert version.store_url.startswith(store.uri("models/"))
    assert version.content_hash == store.ref(version.store_url).content_hash
    assert f"uploaded model {version.name}" in run.log_tail
    assert (Path(model_version_local_path(version)) / "config.json").exists(), "another host loads it from the store"


@pytest.mark.timeout(420)
@override_settings(DUET_HEARTBEAT_TIMEOUT=3)
def test_a_run_killed_on_one_host_resumes_on_another_from_its_uploaded_checkpoint(
    artifacts, tiny_version, worker, wait_for, tmp_path
):
    judged_preferences(8)
    # No per-step log lines: the log's tail must keep the lines that say what was fetched and resumed.
    hyperparameters = {**FAST, "batch_size": 1, "epochs": 8, "log_every": 1000}
    run = services.training_run_start(base_version=tiny_version, hyperparameters=hyperparameters)
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    worker.runs_dir = host_a / "runs"
    worker.start(env=_host_env(artifacts, host_a))
    stored = lambda: artifact_store().list_dirs(f"runs/train-{run.pk}/checkpoints")  # noqa: E731
    wait_for(lambda: run.refresh_from_db() or (run.progress_step >= 3 and bool(stored())), what="an upload")
    worker.kill()
    wait_for(lambda: services.training_run_observe(run_id=run.pk).status == RunStatus.FAILED, timeout=30,
             what="the run to be failed")
    run.refresh_from_db()
    uploaded = selectors.newest_checkpoint_step(run)
    assert uploaded is not None
    assert uploaded >= 1

    services.training_run_resume(run=run)
    other = Worker(host_b / "runs", tmp_path / "worker-b.log")
    try:
        other.start(burst=True, env=_host_env(artifacts, host_b))
        wait_for(lambda: _ended(run), timeout=300, what="the resumed run")
    finally:
        other.stop()
    assert run.status == RunStatus.SUCCEEDED, run.traceback or other.output()
    assert "fetched dataset.jsonl" in run.log_tail
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


# The uploader and the fetch, on folders written as the engine writes them (by this test here) ---------------


def _stored_run() -> TrainingRun:
    return TrainingRun.objects.create(base_version=ModelVersion.objects.create(name="base", path="/models/base"))


def _checkpoint(work: Path, step: int, *, complete: bool = True) -> Path:
    """A checkpoint folder as ``dpo_engine.checkpoint`` leaves it: ``state.json`` marks it complete."""
    folder = work / "checkpoints" / (f"step-{step:08d}" if complete else f".tmp-step-{step:08d}")
    folder.mkdir(parents=True)
    (folder / "weights.pt").write_bytes(bytes(step) * 1000)
    if complete:
        (folder / "state.json").write_text(json.dumps({"step": step}))
    with (work / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"step": step, "split": "train"}) + "\n")
    return folder


@pytest.mark.django_db
def test_the_uploader_puts_the_newest_complete_checkpoint_with_the_metrics_and_keeps_the_newest_few(tmp_path):
    run, work, lines = _stored_run(), tmp_path / "work", []
    uploader = CheckpointUploader(run=run, work=work, keep=2, log=lines.append)
    for step in (1, 2, 3):
        _checkpoint(work, step)
        assert uploader.sync() is not None
    _checkpoint(work, 4, complete=False)
    assert uploader.sync() is None, "a folder the engine is still writing is not a checkpoint yet"
    store = artifact_store()
    assert _names(store.list_dirs(f"{run.store_key}/checkpoints")) == ["step-00000002", "step-00000003"]
    curve = _read(f"{run.store_key}/metrics.jsonl").decode().splitlines()
    assert [json.loads(line)["step"] for line in curve] == [1, 2, 3], "the curve travels with each checkpoint"
    where = f"{store.uri(run.store_key)}/checkpoints/step-00000003"
    assert lines[-1] == f"uploaded checkpoint step-00000003 (3.0 kB) to {where}"


@pytest.mark.django_db
def test_the_uploader_s_thread_uploads_a_checkpoint_another_process_writes_while_the_block_runs(tmp_path, wait_for):
    run, work = _stored_run(), tmp_path / "work"
    stored = lambda: _names(artifact_store().list_dirs(f"{run.store_key}/checkpoints"))  # noqa: E731
    with checkpoint_uploads(run=run, work=work, keep=0, log=lambda line: None):
        _checkpoint(work, 1)
        wait_for(lambda: stored() == ["step-00000001"], timeout=10, what="the thread's upload")
        _checkpoint(work, 2)
    assert stored() == ["step-00000001", "step-00000002"], "the last look after the block uploads what it left"


@pytest.mark.django_db
def test_a_host_without_a_checkpoint_fetches_the_newest_stored_one_and_the_curve_up_to_it(tmp_path):
    run, host_a, lines = _stored_run(), tmp_path / "host-a", []
    uploader = CheckpointUploader(run=run, work=host_a, keep=0, log=lambda line: None)
    for step in (1, 2):
        _checkpoint(host_a, step)
        uploader.sync()
    with (host_a / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 3, "spl')  # the engine was writing step 3 when the curve was uploaded
    uploader._metrics_upload()
    host_b = tmp_path / "host-b"
    assert checkpoint_fetch(run=run, work=host_b, log=lines.append) == "step-00000002"
    fetched = host_b / "checkpoints" / "step-00000002"
    written = host_a / "checkpoints" / "step-00000002"
    assert (fetched / "weights.pt").read_bytes() == (written / "weights.pt").read_bytes()
    assert [json.loads(line)["step"] for line in (host_b / "metrics.jsonl").open()] == [1, 2]
    assert lines[0].startswith("fetching checkpoint step-00000002 from ")
    assert re.match(r"fetched checkpoint step-00000002 \(2\.0 kB\) from ", lines[-1])
    assert checkpoint_fetch(run=run, work=host_b, log=lines.append) is None, "a host with a checkpoint keeps its own"


@pytest.mark.django_db
def test_a_host_whose_own_checkpoint_is_older_than_the_stored_one_fetches_the_newer(tmp_path):
    run, host_a, host_b = _stored_run(), tmp_path / "host-a", tmp_path / "host-b"
    _checkpoint(host_a, 1)
    uploader = CheckpointUploader(run=run, work=host_b, keep=0, log=lambda line: None)
    for step in (1, 2):  # host B took the run on from step 1 and stored step 2
        _checkpoint(host_b, step)
        uploader.sync()
    assert checkpoint_fetch(run=run, work=host_a, log=lambda line: None) == "step-00000002"
    assert checkpoint_fetch(run=run, work=host_b, log=lambda line: None) is None


def test_a_resume_stores_the_curve_up_to_its_checkpoint_that_the_lost_worker_had_not(transactional_db, tmp_path):
    run = _stored_run()
    TrainingMetric.objects.create(run=run, split="train", step=1, values={"step": 1, "loss": 0.5})
    work = tmp_path / "work"
    (work / "checkpoints" / "step-00000003").mkdir(parents=True)
    (work / "checkpoints" / "step-00000003" / "state.json").write_text('{"step": 3}')
    lines = [{"step": s, "split": "train", "loss": 0.1 * s} for s in (1, 2, 3, 4)] + [
        {"step": 2, "split": "eval", "eval/rewards/accuracies": 0.75}
    ]
    (work / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 5, "lo')
    logged: list[str] = []
    assert metrics_backfill(run=run, work=work, log=logged.append) == 3
    rows = {(m.split, m.step): m.values for m in run.metrics.all()}
    assert sorted(rows) == [("eval", 2), ("train", 1), ("train", 2), ("train", 3)], "nothing past the checkpoint"
    assert rows[("train", 1)] == {"step": 1, "loss": 0.5}, "a stored row is kept as it is"
    assert rows[("train", 3)]["loss"] == pytest.approx(0.3)
    assert logged == ["stored 3 step(s) of the curve up to step 3 from metrics.jsonl: the lost worker had not"]
