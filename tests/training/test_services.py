"""Training and generation runs executed by a real RQ worker on the Redis service, with a tiny model."""

import json
import re

import pytest
from django.test import override_settings

from annotate import services as annotate_services
from annotate.filters import JudgementFilter
from annotate.models import Comparison, Completion
from config.artifacts import artifact_store
from tests.annotate.factories import PromptFactory
from tests.training.factories import FAST, judged_preferences
from training import selectors, services
from training.engine_settings import train_spec
from training.evaluation import HELDOUT_MIN, HELDOUT_MIN_PAIRS, heldout_indices
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun

# Jobs go to a Redis database of this test process: another test run's worker must not take them.
pytestmark = pytest.mark.usefixtures("private_queues")

# The schedule left to the engine, with a rate that moves the tiny model within a few steps.
AUTO_FAST = {"lr": 1e-3, "max_length": 128, "max_prompt_length": 64}


def _status(run):
    run.refresh_from_db()
    return run.status


def test_a_run_goes_queued_running_succeeded_with_metrics_and_a_new_version(tiny_version, worker, wait_for):
    judged_preferences(6)
    run = services.training_run_start(base_version=tiny_version, hyperparameters=FAST)
    assert run.status == RunStatus.QUEUED
    assert run.rq_job_id
    worker.start(burst=True)
    wait_for(lambda: _status(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED), what="the run to end")
    assert run.status == RunStatus.SUCCEEDED, run.traceback or worker.output()
    assert run.dataset_rows == 6
    assert run.judgements.count() == 6
    steps = list(run.metrics.filter(split="train").values_list("step", flat=True))
    assert steps == list(range(1, 7)), "a metrics row for every optimiser step (6 pairs / 2 x 2 epochs)"
    assert {"loss", "rewards/accuracies", "rewards/margins"} <= set(run.metrics.last().values)
    version = ModelVersion.objects.get(trained_by=run)
    assert (version.parent, version.name) == (tiny_version, f"tiny+dpo{run.pk}")


def test_a_finished_run_locks_the_judgements_it_trained_on_against_undo(tiny_version, worker, wait_for):
    annotator = judged_preferences(6)[0].judgements.get().annotator
    run = services.training_run_start(base_version=tiny_version, hyperparameters=FAST)
    worker.start(burst=True)
    wait_for(lambda: _status(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED), what="the run to end")
    assert run.status == RunStatus.SUCCEEDED, run.traceback or worker.output()
    assert not run.judgements.filter(trained_at__isnull=True).exists()
    with pytest.raises(annotate_services.JudgementConflict, match="training run"):
        annotate_services.judgement_undo_last(annotator=annotator)


def test_a_run_takes_the_steps_its_preview_promised_and_is_measured_on_its_held_out_pairs(
    tiny_version, worker, wait_for
):
    judged_preferences(HELDOUT_MIN_PAIRS)
    promised = selectors.training_schedule_preview(judgement_filter=JudgementFilter(), hyperparameters=AUTO_FAST)
    run = services.training_run_start(base_version=tiny_version, hyperparameters=AUTO_FAST)
    worker.start(burst=True)
    wait_for(lambda: _status(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED), what="the run to end")
    assert run.status == RunStatus.SUCCEEDED, run.traceback or worker.output()
    total = promised.schedule["total_steps"]
    assert (run.dataset_rows, run.heldout_rows) == (promised.training_pairs, promised.heldout) == (
        HELDOUT_MIN_PAIRS - HELDOUT_MIN, HELDOUT_MIN
    )
    assert (run.progress_step, run.schedule["total_steps"]) == (total, total)
    assert f"total_steps={total}" in run.log_tail, "the log repeats the resolved schedule"
    assert list(run.metrics.filter(split="train").values_list("step", flat=True)) == list(range(1, total + 1))
    evaluated = list(run.metrics.filter(split="eval").values_list("step", flat=True))
    assert evaluated[0] == 0
    assert evaluated[-1] == total
    assert run.eval_after["eval/rewards/accuracies"] > 0.6
    assert run.learned is True, run.verdict
    assert run.verdict.startswith("It learned: held-out accuracy")


def test_a_run_whose_held_out_pairs_contradict_its_training_pairs_did_not_learn_and_holds_its_round_back(
    tiny_version, worker, wait_for
):
    # The held-out rows prefer the answer every training row rejects: the better the run learns its
    # training pairs, the lower its held-out accuracy.
    held = heldout_indices(HELDOUT_MIN_PAIRS, seed=train_spec("seed").default)
    judged_preferences(HELDOUT_MIN_PAIRS, reversed_at=held)
    PromptFactory()
    train_run, gen_run = services.next_round_start(base_version=tiny_version, hyperparameters=AUTO_FAST)
    worker.start(burst=True)
    wait_for(lambda: _status(train_run) in (RunStatus.SUCCEEDED, RunStatus.FAILED), what="the run to end")
    assert train_run.status == RunStatus.SUCCEEDED, train_run.traceback or worker.output()
    assert train_run.heldout_rows == len(held)
    assert train_run.learned is False
    assert train_run.verdict.startswith("It did not learn: held-out accuracy")
    produced = ModelVersion.objects.get(trained_by=train_run)
    gen_run.refresh_from_db()
    assert (gen_run.status, gen_run.error) == (RunStatus.CANCELLED, train_run.verdict)
    assert not Completion.objects.filter(model_version=produced).exists()


def test_the_dataset_is_frozen_with_its_hash_and_rows(tiny_version, worker, wait_for):
    judged_preferences(4)
    run = services.training_run_start(base_version=tiny_version, hyperparameters={**FAST, "epochs": 1})
    worker.start(burst=True)
    wait_for(lambda: _status(run) == RunStatus.SUCCEEDED, what="the run to succeed")
    with artifact_store().open(run.dataset_path) as stored:
        rows = [json.loads(line) for line in stored.read().decode().splitlines()]
    assert len(rows) == run.dataset_rows == 4
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "Sure, here it is."}]
    assert len(run.dataset_sha256) == 64


def test_cancel_stops_a_running_run_within_a_step(tiny_version, worker, wait_for):
    judged_preferences(8)
    run = services.training_run_start(
        base_version=tiny_version, hyperparameters={**FAST, "batch_size": 1, "epochs": 50}
    )
    worker.start(burst=True)
    wait_for(lambda: run.refresh_from_db() or run.progress_step >= 2, what="two steps")
    services.training_run_cancel(run=run)
    wait_for(lambda: _status(run) == RunStatus.CANCELLED, what="the run to stop")
    assert run.progress_step < run.progress_total
    assert not ModelVersion.objects.filter(trained_by=run).exists()


def test_a_queued_run_cancels_at_once(tiny_version, worker):
    judged_preferences(2)
    run = services.training_run_start(base_version=tiny_version, hyperparameters=FAST)
    services.training_run_cancel(run=run)
    assert run.status == RunStatus.CANCELLED


@override_settings(DUET_HEARTBEAT_TIMEOUT=3)
def test_a_killed_worker_is_detected_and_the_run_resumes_from_its_checkpoint(tiny_version, worker, wait_for):
    judged_preferences(8)
    # No per-step log lines: the log's tail must still hold the line that says where the resume started.
    hyperparameters = {**FAST, "batch_size": 1, "epochs": 8, "log_every": 1000}
    run = services.training_run_start(base_version=tiny_version, hyperparameters=hyperparameters)
    worker.start()
    uploaded = lambda: selectors.newest_checkpoint_step(run) is not None  # noqa: E731
    wait_for(lambda: run.refresh_from_db() or (run.progress_step >= 3 and uploaded()), what="three steps, uploaded")
    worker.kill()
    # No worker is left to reap it: reading the run (as its page, the API and --wait do) finds it dead.
    observed = lambda: services.training_run_observe(run_id=run.pk).status == RunStatus.FAILED  # noqa: E731
    wait_for(observed, timeout=30, what="reading the run to fail it")
    assert _status(run) == RunStatus.FAILED
    assert "stopped answering" in run.error
    from dpo_engine.checkpoint import latest_checkpoint

    local = latest_checkpoint(worker.runs_dir / f"train-{run.pk}")
    assert local is not None
    checkpointed = int(local.name.removeprefix("step-"))
    # The curve is stored before each checkpoint is written, so a kill can land between the two: the stored
    # progress may lead the newest checkpoint by the one step (save_every=1) whose save it interrupted.
    assert checkpointed >= run.progress_step - 1 >= 2
    # The page offers the newest uploaded one; this host's newer local one is where it actually continues.
    assert selectors.newest_checkpoint_step(run) <= checkpointed

    services.training_run_resume(run=run)
    worker.start(burst=True)
    wait_for(lambda: _status(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED), timeout=300, what="the resumed run")
    assert run.status == RunStatus.SUCCEEDED, run.traceback
    resumed = re.search(r"resumed from \S+ at step (\d+)/(\d+)", run.log_tail)
    assert resumed is not None, run.log_tail
    assert int(resumed[1]) == checkpointed, "it continued from its newest checkpoint's step"
    assert int(resumed[2]) == run.progress_total
    steps = list(run.metrics.filter(split="train").values_list("step", flat=True))
    assert steps == list(range(1, run.progress_total + 1)), "the resumed curve continues without a gap"
    assert run.resumed_count == 1


# Port 1 on loopback: nothing listens there, so this is Redis being down.
@override_settings(RQ_QUEUES={"gpu": {"URL": "redis://127.0.0.1:1/0"}, "default": {"URL": "redis://127.0.0.1:1/0"}})
def test_with_redis_down_starting_a_run_fails_clearly_and_creates_nothing(tiny_version):
    judged_preferences(2)
    with pytest.raises(services.QueueUnavailable, match="cannot be reached"):
        services.training_run_start(base_version=tiny_version, hyperparameters=FAST)
    assert TrainingRun.objects.count() == 0


def test_generation_pairs_two_samples_into_open_comparisons(tiny_version, worker, wait_for):
    prompts = PromptFactory.create_batch(3)
    run = services.generation_run_start(model_version=tiny_version, n=2, max_new_tokens=8, temperature=1.0)
    worker.start(burst=True)
    wait_for(lambda: _status(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED), what="the generation")
    assert run.status == RunStatus.SUCCEEDED, run.traceback or worker.output()
    made = Completion.objects.filter(model_version=tiny_version)
    assert made.count() == run.completions_created == 6
    assert {c.prompt_id for c in made} == {p.id for p in prompts}
    assert made.first().generation["generation_run"] == run.pk
    assert Comparison.objects.filter(source=f"generation-{run.pk}").count() == run.comparisons_created


def test_generation_against_the_parent_needs_a_parent(tiny_version):
    with pytest.raises(ValueError, match="no parent"):
        services.generation_run_start(model_version=tiny_version, pairing=GenerationRun.Pairing.PARENT)
