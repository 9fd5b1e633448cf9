"""Evaluation judgements measure a model and are never trained on: not exported, not frozen into a run."""

from __future__ import annotations

import json

import pytest

from annotate import services as annotate_services
from annotate.filters import JudgementFilter
from annotate.models import Comparison, Judgement, Purpose
from tests.training.factories import judged_preferences
from training.models import ModelVersion, TrainingRun
from training.services.worker.training_job import dataset_freeze

pytestmark = pytest.mark.django_db


def _half_for_evaluation(count: int) -> set[int]:
    """``count`` judged comparisons, every other one an evaluation comparison; returns the evaluation ids."""
    comparisons = judged_preferences(count)
    evaluation = {c.pk for c in comparisons[::2]}
    Comparison.objects.filter(pk__in=evaluation).update(purpose=Purpose.EVALUATION)
    return evaluation


def test_a_training_export_leaves_evaluation_judgements_out(tmp_path):
    evaluation = _half_for_evaluation(6)
    path = tmp_path / "out.jsonl"
    result = annotate_services.export_preferences(path=path, fmt="jsonl")
    exported = {json.loads(line)["comparison_id"] for line in path.read_text().splitlines()}
    assert result.rows == len(exported) == 3
    assert not exported & evaluation
    assert not Judgement.objects.filter(pk__in=result.judgement_ids, comparison_id__in=evaluation).exists()


def test_a_run_s_frozen_dataset_leaves_evaluation_judgements_out(tmp_path):
    evaluation = _half_for_evaluation(6)
    run = TrainingRun.objects.create(
        base_version=ModelVersion.objects.create(name="base", path="/models/base"),
        dataset_filters=JudgementFilter().to_json(),
    )
    dataset_freeze(run=run, work=tmp_path / "run")
    assert run.dataset_rows + run.heldout_rows == 3
    assert run.judgements.count() == 3
    assert not run.judgements.filter(comparison_id__in=evaluation).exists()
