"""The worker's per-step reporting: one write per step at most, throttled, reading the cancel flag back."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from training.models import TrainingMetric, TrainingRun
from training.services.worker.runtime import StepReporter

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(tiny_version) -> TrainingRun:
    return TrainingRun.objects.create(base_version=tiny_version, status="running")


def _step(reporter: StepReporter, step: int) -> bool:
    """What the engine calls around one optimiser step, in its order."""
    reporter.on_metrics({"step": step, "loss": 0.5, "learning_rate": 1e-6})
    reporter.on_progress(step, 10, 3.0)
    reporter.on_log(f"step {step}/10")
    return reporter.should_stop()


def _writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].split()[0].upper() in ("INSERT", "UPDATE")]


def test_a_step_is_one_metric_insert_and_one_run_update(run):
    reporter = StepReporter(run, interval=0)
    with CaptureQueriesContext(connection) as queries:
        _step(reporter, 1)
    writes = _writes(queries)
    assert len(writes) == 2
    assert "RETURNING" in writes[1]
    run.refresh_from_db()
    assert (run.progress_step, run.progress_total) == (1, 10)
    assert run.heartbeat_at is not None
    assert run.log_tail.endswith("step 1/10\n")
    assert list(TrainingMetric.objects.filter(run=run).values_list("step", flat=True)) == [1]


def test_fast_steps_are_written_together_once_the_interval_passes(run):
    reporter = StepReporter(run, interval=3600)
    with CaptureQueriesContext(connection) as queries:
        for step in range(1, 6):
            _step(reporter, step)
    assert _writes(queries) == []
    reporter.flush()
    assert list(TrainingMetric.objects.filter(run=run).values_list("step", flat=True)) == [1, 2, 3, 4, 5]


def test_the_cancel_flag_comes_back_from_the_progress_write(run):
    reporter = StepReporter(run, interval=0)
    assert _step(reporter, 1) is False
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    assert _step(reporter, 2) is True


def test_the_curve_up_to_a_checkpoint_is_stored_before_the_checkpoint_is_written(run):
    reporter = StepReporter(run, interval=3600)
    for step in range(1, 4):
        _step(reporter, step)
    reporter.callbacks().before_checkpoint(3)
    assert TrainingMetric.objects.filter(run=run).count() == 3


def test_held_out_evaluations_are_stored_beside_the_training_step_of_the_same_number(run):
    reporter = StepReporter(run, interval=3600)
    reporter.on_metrics({"step": 0, "split": "eval", "eval/rewards/accuracies": 0.0, "eval/loss": 0.69})
    _step(reporter, 1)
    reporter.on_metrics({"step": 1, "split": "eval", "eval/rewards/accuracies": 0.75, "eval/loss": 0.6})
    reporter.flush()
    stored = {(m.split, m.step): m.values for m in TrainingMetric.objects.filter(run=run)}
    assert set(stored) == {("eval", 0), ("train", 1), ("eval", 1)}
    assert stored[("eval", 1)] == {"step": 1, "eval/rewards/accuracies": 0.75, "eval/loss": 0.6}
    assert stored[("train", 1)]["loss"] == 0.5


def test_the_schedule_is_stored_with_its_step_count_before_the_first_step(run):
    reporter = StepReporter(run, interval=3600)
    reporter.callbacks().on_schedule(
        {"pairs": 36, "regime": "small-data", "optimizer": "adamw", "lr": 5e-6, "warmup_steps": 2, "epochs": 3,
         "batch_size": 4, "grad_accum": 1, "effective_batch": 4, "steps_per_epoch": 9, "total_steps": 27,
         "world_size": 1, "notes": ["36 pairs < 2000: small-data schedule"]}
    )
    run.refresh_from_db()
    assert (run.schedule["total_steps"], run.schedule["regime"], run.progress_total) == (27, "small-data", 27)


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_only_while_what_it_covers_is_alive(tiny_version, settings):
    import time

    from training.services.worker.runtime import heartbeat

    settings.DUET_HEARTBEAT_SECONDS = 0.05
    run = TrainingRun.objects.create(base_version=tiny_version, status="running")
    with heartbeat(model=TrainingRun, run_id=run.pk) as beat:
        beat.alive = lambda: False  # a launched child that has died
        time.sleep(0.5)
        run.refresh_from_db()
        assert run.heartbeat_at is None
        beat.alive = lambda: True
        time.sleep(0.5)
    run.refresh_from_db()
    assert run.heartbeat_at is not None
