"""next_round_start narrows its training run's judgements by the quality options, like any run."""

from __future__ import annotations

import pytest

from tests.annotate.factories import CampaignFactory
from training import services
from training.models import TrainingRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_queues")]


def test_the_next_rounds_training_run_keeps_the_quality_options(tiny_version):
    CampaignFactory(slug="helpful")
    train_run, _ = services.next_round_start(
        base_version=tiny_version, quality={"campaign": "helpful", "include_flagged": True, "exclude_rushed": True}
    )
    filters = train_run.dataset_filters
    assert (filters["campaign"], filters["include_flagged"], filters["exclude_rushed"]) == ("helpful", True, True)


def test_the_next_round_leaves_flagged_annotators_out_by_default(tiny_version):
    train_run, _ = services.next_round_start(base_version=tiny_version)
    assert train_run.dataset_filters["include_flagged"] is False


def test_a_next_round_for_an_unknown_campaign_starts_nothing(tiny_version):
    with pytest.raises(ValueError, match="nowhere"):
        services.next_round_start(base_version=tiny_version, quality={"campaign": "nowhere"})
    assert not TrainingRun.objects.exists()
