"""What the web may start: evaluation data and prompts stay out of training."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.conf import settings

from annotate.filters import JudgementFilter
from tests.annotate.factories import PromptFactory
from training import selectors, services
from training.models import GenerationRun, RunStatus, TrainingRun
from training.services.control import MAX_PROMPTS_MAX

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


# Checked before anything is written or queued ------------------------------------------------


@pytest.fixture
def version():
    from training.models import ModelVersion

    return ModelVersion.objects.create(name="plain", path="/models/plain")


def test_a_round_limited_beyond_the_column_is_refused(version):
    with pytest.raises(ValueError, match="max_prompts must be in"):
        services.generation_run_start(model_version=version, n=2, max_prompts=MAX_PROMPTS_MAX + 1)
    assert not GenerationRun.objects.exists()


def test_a_round_since_a_moment_with_no_utc_time_is_refused(version):
    edge = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-14)))
    with pytest.raises(ValueError, match=r"since .* lies outside"):
        services.generation_run_start(model_version=version, n=2, prompts=GenerationRun.Prompts.NEW, since=edge)
    assert not GenerationRun.objects.exists()


@pytest.mark.parametrize(
    ("hyperparameters", "field"),
    [
        ({"batch_size": float("inf")}, "batch_size"),
        ({"lr": "abc"}, "lr"),
        ({"lr": {"nested": 1}}, "lr"),
        ({"beta": -1}, "beta"),
        ({"loss": ["sigmoid", 3]}, "loss"),
    ],
)
def test_a_run_with_a_bad_hyperparameter_names_it_and_queues_nothing(version, hyperparameters, field):
    from training.models import TrainingRun

    with pytest.raises(ValueError, match=f"^{field} "):
        services.training_run_start(base_version=version, hyperparameters=hyperparameters)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("private_queues")
def test_a_run_on_two_processes_waits_on_the_two_gpu_queue_and_resumes_there(tiny_version):
    import django_rq

    run = services.training_run_start(base_version=tiny_version, hyperparameters={}, processes=2)
    assert run.processes == 2
    assert django_rq.get_queue("gpu-x2").job_ids == [run.rq_job_id]
    assert django_rq.get_queue("gpu").count == 0
    django_rq.get_queue("gpu-x2").empty()
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)
    run.refresh_from_db()
    services.training_run_resume(run=run)
    assert django_rq.get_queue("gpu-x2").job_ids == [run.rq_job_id]


@pytest.mark.parametrize("processes", [0, settings.DUET_MAX_PROCESSES_PER_RUN + 1])
def test_a_run_on_more_processes_than_the_limit_is_refused_and_queues_nothing(version, processes):
    with pytest.raises(ValueError, match="processes"):
        services.training_run_start(base_version=version, hyperparameters={}, processes=processes)
    assert not TrainingRun.objects.exists()
