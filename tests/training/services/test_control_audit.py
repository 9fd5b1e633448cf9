"""Each start, cancel and resume of a run leaves one audit line naming the run."""

from __future__ import annotations

import pytest

from annotate.models import AuditAction, AuditEntry
from training import services
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_queues")]


@pytest.fixture
def version() -> ModelVersion:
    return ModelVersion.objects.create(name="tiny-base", path="/models/tiny-base")


def _only_line() -> AuditEntry:
    return AuditEntry.objects.get()


def test_starting_a_training_run_writes_one_line(version: ModelVersion) -> None:
    run = services.training_run_start(base_version=version, hyperparameters={})
    entry = _only_line()
    expected = (AuditAction.TRAINING_START, "training.trainingrun", str(run.pk))
    assert (entry.action, entry.target_type, entry.target_id) == expected


def test_cancelling_a_training_run_writes_one_line(version: ModelVersion) -> None:
    run = TrainingRun.objects.create(base_version=version, hyperparameters={})
    services.training_run_cancel(run=run)
    assert (_only_line().action, _only_line().target_id) == (AuditAction.TRAINING_CANCEL, str(run.pk))


def test_resuming_a_training_run_writes_one_line(version: ModelVersion) -> None:
    run = TrainingRun.objects.create(base_version=version, hyperparameters={}, status=RunStatus.FAILED)
    services.training_run_resume(run=run)
    assert (_only_line().action, _only_line().target_id) == (AuditAction.TRAINING_RESUME, str(run.pk))


def test_starting_a_generation_run_writes_one_line(version: ModelVersion) -> None:
    run = services.generation_run_start(model_version=version)
    assert (_only_line().action, _only_line().target_type) == (AuditAction.GENERATION_START, "training.generationrun")
    assert _only_line().target_id == str(run.pk)


def test_cancelling_a_generation_run_writes_one_line(version: ModelVersion) -> None:
    run = GenerationRun.objects.create(model_version=version)
    services.training_run_cancel(run=run)
    assert (_only_line().action, _only_line().target_id) == (AuditAction.GENERATION_CANCEL, str(run.pk))


def test_a_refused_cancel_writes_no_line(version: ModelVersion) -> None:
    run = TrainingRun.objects.create(base_version=version, hyperparameters={}, status=RunStatus.SUCCEEDED)
    with pytest.raises(services.RunStateError):
        services.training_run_cancel(run=run)
    assert not AuditEntry.objects.exists()


def test_the_next_round_writes_a_line_for_each_run_it_starts(version: ModelVersion) -> None:
    services.next_round_start(base_version=version)
    actions = sorted(AuditEntry.objects.values_list("action", flat=True))
    assert actions == [AuditAction.GENERATION_START, AuditAction.TRAINING_START]
