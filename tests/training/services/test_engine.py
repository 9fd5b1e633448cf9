"""Runs on several processes: a real worker launches torchrun (gloo on the CPU) with the tiny model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from config.artifacts import artifact_store
from tests.training.factories import FAST as FACTORY_FAST
from tests.training.factories import judged_preferences
from training import services
from training.models import ModelVersion, RunStatus, TrainingRun
from training.services.versions import model_version_local_path
from training.services.worker.children import descendants, process_alive

pytestmark = [pytest.mark.usefixtures("private_queues"), pytest.mark.slow, pytest.mark.distributed]

FAST = {**FACTORY_FAST, "batch_size": 1}
TWO_GPUS = {"DUET_GPUS": "2"}


def _status(run: TrainingRun) -> str:
    run.refresh_from_db()
    return run.status


def _ended(run: TrainingRun) -> bool:
    return _status(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def _engine_processes(worker) -> list[int]:  # type: ignore[no-untyped-def]
    """The torchrun launcher and the training processes below the worker."""
    found = []
    for pid in descendants(worker.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"dpo_engine" in command:
            found.append(pid)
    return found


@pytest.mark.timeout(300)
def test_a_two_process_run_waits_for_a_worker_with_two_gpus(tiny_version, worker, wait_for):
    # No judgements: a worker that takes the run fails it at once, for want of pairs, before launching anything.
    run = services.training_run_start(base_version=tiny_version, hyperparameters=FAST, processes=2)
    worker.start(burst=True, env={"DUET_GPUS": "1"})
    assert worker.process is not None
    worker.process.wait(timeout=120)
    assert _status(run) == RunStatus.QUEUED, worker.output()[-3000:]
    worker.start(burst=True, env=TWO_GPUS)
    wait_for(lambda: _status(run) != RunStatus.QUEUED, timeout=120, what="the two-GPU worker to take the run")
    wait_for(lambda: _ended(run), timeout=60, what="the run to end")
    assert "no decided comparisons" in run.error


@pytest.mark.timeout(600)
def test_a_two_process_run_trains_through_torchrun_and_registers_its_version(tiny_version, worker, wait_for):
    judged_preferences(6)
    run = services.training_run_start(base_version=tiny_version, hyperparameters=FAST, processes=2)
    worker.start(burst=True, env=TWO_GPUS)
    wait_for(lambda: _ended(run), timeout=540, what="the run to end")
    assert run.status == RunStatus.SUCCEEDED, f"{run.error}\n{worker.output()[-3000:]}"
    assert "launching 2 processes through torchrun" in run.log_tail
    assert run.schedule["world_size"] == 2
    assert "replicas agree" in run.log_tail, "the engine's own log lines reach the run's log"
    total = run.schedule["total_steps"]
    assert (run.progress_step, run.progress_total) == (total, total) == (6, 6), "6 pairs on 2 processes x 2 epochs"
    assert list(run.metrics.filter(split="train").values_list("step", flat=True)) == list(range(1, total + 1))
    assert {"loss", "rewards/accuracies"} <= set(run.metrics.last().values)
    version = ModelVersion.objects.get(trained_by=run)
    assert (Path(model_version_local_path(version)) / "config.json").exists()


@pytest.mark.timeout(600)
def test_cancelling_a_two_process_run_stops_every_process_of_it(tiny_version, worker, wait_for):
    judged_preferences(8)
    run = services.training_run_start(
        base_version=tiny_version, hyperparameters={**FAST, "epochs": 50}, processes=2
    )
    worker.start(burst=True, env=TWO_GPUS)
    wait_for(lambda: run.refresh_from_db() or run.progress_step >= 2, timeout=400, what="two steps")
    launched = _engine_processes(worker)
    assert len(launched) == 3, "the launcher and its two training processes"
    services.training_run_cancel(run=run)
    wait_for(lambda: _ended(run), timeout=120, what="the run to stop")
    assert run.status == RunStatus.CANCELLED, f"{run.error}\n{worker.output()[-3000:]}"
    wait_for(lambda: not any(process_alive(pid) for pid in launched), timeout=10, what="its processes to be gone")
    assert "stopped at step" in run.log_tail, "each process stopped after its step and saved a checkpoint"
    assert run.progress_step < run.progress_total
    assert not ModelVersion.objects.filter(trained_by=run).exists()


@pytest.mark.timeout(600)
def test_a_crashing_training_process_fails_the_run_with_its_error(tiny_version, worker, wait_for, tmp_path):
    judged_preferences(4)
    run = services.training_run_start(base_version=tiny_version, hyperparameters=FAST, processes=2)
    bad = tmp_path / "dataset.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    # Frozen as a worker freezes it, into the store: the worker fetches it, then the engine's processes read it.
    uri = artifact_store().put_file(bad, f"{run.store_key}/dataset.jsonl")
    sha256 = hashlib.sha256(bad.read_bytes()).hexdigest()
    TrainingRun.objects.filter(pk=run.pk).update(dataset_path=uri, dataset_rows=4, dataset_sha256=sha256)
    worker.start(burst=True, env=TWO_GPUS)
    wait_for(lambda: _ended(run), timeout=400, what="the run to end")
    assert run.status == RunStatus.FAILED, worker.output()[-3000:]
    assert "the 2 training processes failed" in run.error
    assert f"train-{run.pk}/dataset.jsonl" in run.error, run.error
    assert "last lines of their output" in run.error
