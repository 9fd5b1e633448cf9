"""next_round_start's training run takes the quality options (include flagged, exclude rushed) like any run."""

from __future__ import annotations

import pytest

from training import services

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_queues")]


def test_the_next_rounds_training_run_keeps_the_quality_options(tiny_version):
    train_run, _ = services.next_round_start(base_version=tiny_version, include_flagged=True, exclude_rushed=True)
    filters = train_run.dataset_filters
    assert (filters["include_flagged"], filters["exclude_rushed"]) == (True, True)


def test_the_next_round_leaves_flagged_annotators_out_by_default(tiny_version):
    train_run, _ = services.next_round_start(base_version=tiny_version)
    assert (train_run.dataset_filters["include_flagged"], train_run.dataset_filters["exclude_rushed"]) == (False, False)
