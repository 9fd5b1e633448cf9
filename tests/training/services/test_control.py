"""What the web may start: evaluation data and prompts stay out of training."""

from __future__ import annotations

import pytest
from django.conf import settings

from annotate.filters import JudgementFilter
from tests.annotate.factories import PromptFactory
from training import selectors, services
from training.models import GenerationRun, RunStatus, TrainingRun

pytestmark = pytest.mark.django_db


def test_a_training_run_refuses_evaluation_judgements(tiny_version):
    with pytest.raises(ValueError, match="never trained on"):
        services.training_run_start(
            base_version=tiny_version, hyperparameters={}, judgement_filter=JudgementFilter(include_evaluation=True)
        )


def test_a_training_round_refuses_the_evaluation_tag(tiny_version):
    with pytest.raises(ValueError, match="kept for evaluation"):
        services.generation_run_start(
            model_version=tiny_version, prompts=GenerationRun.Prompts.TAG, tag=settings.DUET_EVAL_TAG, n=2
        )


def test_a_chained_round_that_never_started_cannot_be_resumed(tiny_version):
    training = TrainingRun.objects.create(base_version=tiny_version, status=RunStatus.FAILED)
    run = GenerationRun.objects.create(model_version=tiny_version, after_training=training, status=RunStatus.CANCELLED)
    with pytest.raises(services.RunStateError, match="made no version to sample"):
        services.generation_run_resume(run=run)


def test_a_training_round_leaves_evaluation_prompts_out(tiny_version):
    kept = PromptFactory(tags=["demo"])
    PromptFactory(tags=[settings.DUET_EVAL_TAG])
    run = GenerationRun(model_version=tiny_version, prompts=GenerationRun.Prompts.ALL)
    assert selectors.generation_prompts(run=run) == [kept]
