"""annotator_reliability counts rushed votes by the threshold of the campaign its filter names."""

from datetime import timedelta

import pytest

from annotate import selectors
from annotate.filters import JudgementFilter
from annotate.models import Assignment
from tests.annotate.factories import CampaignFactory, ComparisonFactory, UserFactory
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.django_db


def _rushed_counts(judgement_filter):
    reliability = selectors.annotator_reliability(judgement_filter=judgement_filter)
    return {row.username: row.rushed for row in reliability.annotators}


def test_a_campaigns_own_rushed_threshold_counts_when_the_filter_names_it(settings):
    settings.DUET_RUSHED_SECONDS = 1
    campaign, user = CampaignFactory(slug="careful", rushed_seconds=30), UserFactory(username="ann")
    vote = judge(user, ComparisonFactory(campaign=campaign))
    Assignment.objects.filter(annotator=user).update(created_at=vote.created_at - timedelta(seconds=10))
    assert _rushed_counts(JudgementFilter(campaign="careful")) == {"ann": 1}
    assert _rushed_counts(JudgementFilter()) == {"ann": 0}
