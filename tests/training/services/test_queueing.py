"""Enqueueing after commit: a run whose job never reached Redis leaves nothing behind."""

from __future__ import annotations

import pytest

from tests.training.factories import judged_preferences
from training import services
from training.models import GenerationRun, TrainingRun
from training.services import control

pytestmark = pytest.mark.usefixtures("private_queues")

# Port 1 on loopback: nothing listens there, so this is Redis gone.
GONE = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_goes_away_after_the_check(settings, monkeypatch):  # type: ignore[no-untyped-def]
    """The Redis check passes on the live server; then Redis goes away before the transaction commits."""
    checked = control.queue_check

    def check_then_lose_redis(*, name: str) -> None:
        checked(name=name)
        settings.RQ_QUEUES = {queue: {**config, "URL": GONE} for queue, config in settings.RQ_QUEUES.items()}

    monkeypatch.setattr(control, "queue_check", check_then_lose_redis)


@pytest.mark.usefixtures("redis_goes_away_after_the_check")
def test_next_round_leaves_no_queued_generation_when_redis_dies_before_its_commit(tiny_version):
    judged_preferences(2)
    with pytest.raises(services.QueueUnavailable, match="nothing was started"):
        services.next_round_start(base_version=tiny_version)
    assert not TrainingRun.objects.exists()
    assert not GenerationRun.objects.exists(), "no generation waits for a training run that will never run"
