"""One unattended round on the tiny model: import → generate → the oracle judges → train → the next round is queued."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate.models import Comparison, Judgement, Prompt, Purpose
from training import oracles
from training.leaderboard import leaderboard
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun

# The rest of the schedule is the product's: resolved against the round's few pairs. The tiny random model needs
# a far larger rate than a real one to move in a few steps, and short sequences keep it quick.
FAST = {"lr": 1e-3, "max_length": 128, "max_prompt_length": 64}


@pytest.mark.slow
def test_one_round_runs_end_to_end_and_the_leaderboard_ranks_the_versions(tiny_version, worker, runs_dir, monkeypatch):
    # One thread: the tiny model gains nothing from more, and spinning threads crawl on a shared, busy machine.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    worker.start()
    out = io.StringIO()
    call_command(
        "simulate_round",
        "--oracle=shorter",
        "--base=tiny",
        "--pairs=4",
        "--eval-prompts=3",
        "--max-new-tokens=8",
        f"--hyperparameters={json.dumps(FAST)}",
        "--timeout=120",
        stdout=out,
    )
    printed = out.getvalue()
    assert f"hyper-parameters {json.dumps(FAST)}" in printed, "only the overrides: the rest is the product's"
    assert Prompt.objects.count() == 350, "the shipped prompts were imported"

    first = GenerationRun.objects.get(after_training=None, purpose=Purpose.TRAINING)
    assert (first.model_version, first.pairing, first.status) == (tiny_version, "self", RunStatus.SUCCEEDED)

    user = oracles.oracle_user(oracles.Shorter())
    assert user.username == "oracle-shorter"
    votes = Judgement.objects.filter(annotator=user, comparison__purpose=Purpose.TRAINING).select_related(
        "left", "right"
    )
    assert votes.count() == 4
    for vote in votes:
        assert vote.choice == oracles.choice_of(oracles.Shorter(), vote.left.text, vote.right.text)

    train_run = TrainingRun.objects.get()
    assert train_run.status == RunStatus.SUCCEEDED, train_run.traceback or worker.output()
    assert train_run.judgements.count() == 4
    new_version = ModelVersion.objects.get(trained_by=train_run)
    assert new_version.parent == tiny_version

    second = GenerationRun.objects.get(after_training=train_run)
    assert (second.model_version, second.status) == (new_version, RunStatus.SUCCEEDED), worker.output()
    queued = Comparison.objects.filter(source=f"generation-{second.pk}", judgement_count=0)
    assert queued.count() == second.comparisons_created > 0
    for comparison in queued.select_related("prompt", "completion_a", "completion_b"):
        assert "oracle-train" in comparison.prompt.tags, "held-out prompts never reach the queue"
        assert {comparison.completion_a.model_name, comparison.completion_b.model_name} == {"tiny", new_version.name}

    evaluation = GenerationRun.objects.get(purpose=Purpose.EVALUATION)
    assert (evaluation.model_version, evaluation.pairing, evaluation.tag) == (new_version, "parent", "oracle-eval")
    assert evaluation.status == RunStatus.SUCCEEDED, worker.output()
    judged_evaluation = Judgement.objects.filter(comparison__purpose=Purpose.EVALUATION, annotator=user)
    assert judged_evaluation.count() == evaluation.comparisons_created
    assert not train_run.judgements.filter(comparison__purpose=Purpose.EVALUATION).exists()

    assert f"round 1: held-out vs parent: {new_version.name} vs tiny on " in printed
    assert f"round 1: held-out vs baseline: {new_version.name} vs tiny on 3 prompts" in printed
    assert printed.count("length-controlled") >= 2
    assert "loop (judge+train+generate)" in printed
    assert "evaluation vs tiny, oracle-shorter: " in printed

    oracles.oracle_judge_open(oracle=oracles.Shorter(), limit=10, tag="oracle-train")
    board = leaderboard(bootstrap=20)
    assert {s.name for s in board.standings if s.rank is not None} == {"tiny", new_version.name}
    assert board.judgements == second.comparisons_created + evaluation.comparisons_created
    assert board.evaluation_judgements == evaluation.comparisons_created


def test_an_unknown_oracle_is_refused_before_anything_happens(db):
    with pytest.raises(CommandError, match="unknown oracle 'kinder'"):
        call_command("simulate_round", "--oracle=kinder")
    assert Prompt.objects.count() == 0
