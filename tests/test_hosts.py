"""Duet across machines: two worker hosts that share only PostgreSQL, Redis and the artifact store.

A "host" is a worker process with its own ``DUET_VAR_DIR``, ``DUET_RUNS_DIR``, ``DUET_CACHE``, working
directory and host name; the web is this test process. One test walks the whole deployment story, once on a
``file://`` store and once on S3 (a real moto server that s3fs talks HTTP to): a two-process run through
torchrun on host A, host A lost mid-run, the run resumed on host B from the checkpoint A uploaded, the new
version's generation round sharded over both hosts, and the model downloaded from the web.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import override_settings

from config.artifacts import artifact_store
from config.artifacts.store import MANIFEST
from tests.annotate.factories import PromptFactory, StaffFactory
from tests.conftest import Worker
from tests.training.factories import FAST, judged_preferences
from training import selectors, services
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun
from training.services.worker.generation_job import GENERATION_CHUNK

pytestmark = pytest.mark.usefixtures("private_queues")

# No per-step log lines: the log's tail must keep the lines that say what was fetched and resumed.
TRAIN = {**FAST, "batch_size": 1, "epochs": 8, "log_every": 1000}


@dataclass
class Host:
    """A machine of its own: folders, cache, working directory and name; two GPUs' worth of gloo processes."""

    name: str
    root: Path
    store_env: dict[str, str]

    def worker(self) -> Worker:
        cwd = self.root / "cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        return Worker(self.root / "runs", self.root / f"{self.name}.log", cwd=cwd)

    def env(self) -> dict[str, str]:
        return {
            **self.store_env,
            "DUET_HOST_NAME": self.name,
            "DUET_GPUS": "2",
            "DUET_VAR_DIR": str(self.root / "var"),
            "DUET_CACHE": str(self.root / "cache"),
            "DUET_MODEL_CACHE": str(self.root / "model-cache"),
            "DUET_GENERATION_SHARD_PROMPTS": str(GENERATION_CHUNK),
        }

    def cached(self, content_hash: str) -> bool:
        return any(content_hash in p.name for p in (self.root / "cache").rglob("*") if p.is_dir())


def _ended(run: TrainingRun | GenerationRun) -> bool:
    run.refresh_from_db()
    return run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def _listening(worker: Worker) -> bool:
    return "Listening on" in worker.output()


def _tar_files(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


@pytest.mark.timeout(900)
@override_settings(DUET_HEARTBEAT_TIMEOUT=3)
def test_two_hosts_train_on_two_processes_resume_share_a_round_and_the_web_serves_the_model(
    transactional_db, artifacts, tiny_model_path, wait_for, tmp_path, client
):
    base = services.model_version_register(name="tiny", path=str(tiny_model_path))
    assert base.store_url, "a local folder is published into the store at registration"
    judged_preferences(8)
    host_a = Host("gpu-a", tmp_path / "host-a", artifacts.env)
    host_b = Host("gpu-b", tmp_path / "host-b", artifacts.env)
    worker_a, worker_b = host_a.worker(), host_b.worker()
    try:
        run = services.training_run_start(base_version=base, hyperparameters=TRAIN, processes=2)
        worker_a.start(env=host_a.env())
        stored = lambda: artifact_store().list_dirs(f"runs/train-{run.pk}/checkpoints")  # noqa: E731
        wait_for(lambda: run.refresh_from_db() or (run.progress_step >= 3 and bool(stored())),
                 timeout=300, what="host A to upload a checkpoint")
        assert "launching 2 processes through torchrun" in run.log_tail
        worker_a.kill()
        wait_for(lambda: services.training_run_observe(run_id=run.pk).status == RunStatus.FAILED, timeout=60,
                 what="host A's run to be failed")
        run.refresh_from_db()
        uploaded = selectors.newest_checkpoint_step(run)
        assert uploaded is not None

        services.training_run_resume(run=run)
        worker_b.start(env=host_b.env())
        wait_for(lambda: _ended(run), timeout=400, what="the run resumed on host B")
        assert run.status == RunStatus.SUCCEEDED, run.traceback or worker_b.output()
        resumed = re.search(r"resumed from (\S+) at step (\d+)/(\d+)", run.log_tail)
        assert resumed is not None, run.log_tail
        assert resumed[1].startswith(str(host_b.root)), "host B trained in a folder of its own"
        assert int(resumed[2]) == uploaded, "host B continued from host A's uploaded checkpoint"
        assert list(run.metrics.filter(split="train").values_list("step", flat=True)) == list(
            range(1, run.progress_total + 1)
        ), "one curve without a gap across the two hosts"
        version = ModelVersion.objects.get(trained_by=run)
        assert version.store_url.startswith(artifact_store().uri("models/"))

        PromptFactory.create_batch(4 * GENERATION_CHUNK)
        worker_a.start(env=host_a.env())
        wait_for(lambda: _listening(worker_a) and _listening(worker_b), timeout=120, what="both workers")
        round_ = services.generation_run_start(model_version=version, pairing="self", n=2, max_new_tokens=4)
        wait_for(lambda: _ended(round_), timeout=400, what="the sharded round")
        assert round_.status == RunStatus.SUCCEEDED, round_.error + worker_a.output() + worker_b.output()
        assert {s.host for s in round_.shards.all()} == {"gpu-a", "gpu-b"}, "both hosts wrote a part of the round"
        assert host_a.cached(version.content_hash), "host A fetched the model host B trained from the store"
    finally:
        worker_a.stop()
        worker_b.stop()

    client.force_login(StaffFactory())
    response = client.get(f"/training/models/{version.pk}/download/")
    assert response.status_code == 200
    files = _tar_files(b"".join(response.streaming_content))
    manifest = artifact_store().manifest(version.store_url)
    assert manifest is not None
    assert set(files) - {MANIFEST} == {entry["path"] for entry in manifest["files"]}
    with artifact_store().open(f"{version.store_url}/config.json") as fh:
        assert files["config.json"] == fh.read()
