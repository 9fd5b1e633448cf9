"""``annotate/selectors/campaigns.py``: the campaigns open to an annotator, their progress, guidelines seen."""

from __future__ import annotations

import pytest

from annotate import selectors, services
from annotate.limits import DEFAULT_CAMPAIGN_SLUG
from annotate.models import CampaignAccess, CampaignStatus
from tests.annotate.factories import CampaignFactory, ComparisonFactory, GoldComparisonFactory, UserFactory
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.django_db


def _slugs(user):
    return [c.slug for c in selectors.campaigns_open_to(annotator=user) if c.slug != DEFAULT_CAMPAIGN_SLUG]


def test_campaigns_open_to_lists_active_and_paused_ones_oldest_first():
    active = CampaignFactory()
    paused = CampaignFactory(status=CampaignStatus.PAUSED)
    assert _slugs(UserFactory()) == [active.slug, paused.slug]


def test_campaigns_open_to_leaves_out_closed_ones():
    CampaignFactory(status=CampaignStatus.CLOSED)
    assert _slugs(UserFactory()) == []


def test_campaigns_open_to_leaves_out_ones_the_user_may_not_work_on():
    user = UserFactory()
    named = CampaignFactory(access=CampaignAccess.USERS)
    named.users.add(user, UserFactory())
    CampaignFactory(access=CampaignAccess.USERS)
    assert _slugs(user) == [named.slug]


def test_campaign_progress_counts_the_annotators_judgements_and_what_is_left_there():
    campaign = CampaignFactory()
    done, _left = ComparisonFactory.create_batch(2, campaign=campaign, target_judgements=2)
    ComparisonFactory(campaign=CampaignFactory(), target_judgements=5)
    user = UserFactory()
    judge(user, done)
    progress = selectors.campaign_progress(annotator=user, campaign=campaign)
    assert (progress.judged, progress.remaining) == (1, 2)


def test_campaign_progress_leaves_gold_items_out_of_what_is_left():
    campaign = CampaignFactory()
    GoldComparisonFactory(campaign=campaign)
    ComparisonFactory(campaign=campaign, target_judgements=3)
    assert selectors.campaign_progress(annotator=UserFactory(), campaign=campaign).remaining == 3


def test_guidelines_are_unseen_until_marked():
    user, campaign = UserFactory(), CampaignFactory(guidelines="Prefer the *honest* answer.")
    before = selectors.guidelines_seen(annotator=user, campaign=campaign)
    services.guidelines_mark_seen(annotator=user, campaign=campaign)
    assert (before, selectors.guidelines_seen(annotator=user, campaign=campaign)) == (False, True)


def test_a_campaign_without_guidelines_counts_as_seen():
    assert selectors.guidelines_seen(annotator=UserFactory(), campaign=CampaignFactory(guidelines=""))
