"""Who a campaign serves: status, access (everyone, named users, a group) and flagged annotators."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from annotate import services
from annotate.limits import DEFAULT_CAMPAIGN_SLUG
from annotate.models import AnnotatorFlag, Campaign, CampaignAccess, CampaignStatus
from annotate.selectors.campaigns import campaign_access_q
from tests.annotate.factories import CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db


def _reason(user, campaign):
    try:
        services.queue_check(annotator=user, campaign=campaign)
    except services.QueueRefused as refused:
        return refused.reason
    return None


def _flag(user, campaign):
    AnnotatorFlag.objects.create(campaign=campaign, annotator=user, reason="gold", gold_seen=10, gold_correct=3)


def test_an_active_campaign_open_to_everyone_serves_anyone():
    assert _reason(UserFactory(), CampaignFactory()) is None


def test_a_paused_campaign_is_refused_as_paused():
    assert _reason(UserFactory(), CampaignFactory(status=CampaignStatus.PAUSED)) == "paused"


def test_a_closed_campaign_is_refused_as_closed():
    assert _reason(UserFactory(), CampaignFactory(status=CampaignStatus.CLOSED)) == "closed"


def test_a_named_users_campaign_serves_its_users():
    user = UserFactory()
    campaign = CampaignFactory(access=CampaignAccess.USERS)
    campaign.users.add(user)
    assert _reason(user, campaign) is None


def test_a_named_users_campaign_refuses_others_as_forbidden():
    campaign = CampaignFactory(access=CampaignAccess.USERS)
    campaign.users.add(UserFactory())
    assert _reason(UserFactory(), campaign) == "forbidden"


def test_a_group_campaign_serves_the_groups_members():
    group = Group.objects.create(name="raters")
    user = UserFactory()
    user.groups.add(group)
    assert _reason(user, CampaignFactory(access=CampaignAccess.GROUP, group=group)) is None


def test_a_group_campaign_refuses_others_as_forbidden():
    group = Group.objects.create(name="raters")
    assert _reason(UserFactory(), CampaignFactory(access=CampaignAccess.GROUP, group=group)) == "forbidden"


def test_a_group_campaign_without_a_group_serves_no_one():
    assert _reason(UserFactory(), CampaignFactory(access=CampaignAccess.GROUP)) == "forbidden"


def test_a_flagged_annotator_is_refused_when_the_campaign_pauses_flagged_ones():
    user, campaign = UserFactory(), CampaignFactory(pause_flagged=True)
    _flag(user, campaign)
    with pytest.raises(services.QueueRefused) as refused:
        services.queue_check(annotator=user, campaign=campaign)
    assert (refused.value.reason, refused.value.message) == ("flagged", "Your queue is paused: contact staff.")


def test_a_flagged_annotator_is_served_when_the_campaign_does_not_pause_them():
    user, campaign = UserFactory(), CampaignFactory(pause_flagged=False)
    _flag(user, campaign)
    assert _reason(user, campaign) is None


def test_a_cleared_flag_no_longer_pauses_the_queue():
    user, campaign = UserFactory(), CampaignFactory(pause_flagged=True)
    _flag(user, campaign)
    AnnotatorFlag.objects.update(cleared_at="2026-01-01T00:00:00Z")
    assert _reason(user, campaign) is None


def test_a_flag_in_another_campaign_does_not_pause_this_one():
    user, campaign = UserFactory(), CampaignFactory(pause_flagged=True)
    _flag(user, CampaignFactory(pause_flagged=True))
    assert _reason(user, campaign) is None


def test_access_filter_lists_the_campaigns_a_user_may_work_on():
    user = UserFactory()
    group = Group.objects.create(name="raters")
    user.groups.add(group)
    everyone = CampaignFactory()
    named = CampaignFactory(access=CampaignAccess.USERS)
    named.users.add(user)
    grouped = CampaignFactory(access=CampaignAccess.GROUP, group=group)
    CampaignFactory(access=CampaignAccess.USERS)
    CampaignFactory(access=CampaignAccess.GROUP, group=Group.objects.create(name="others"))
    allowed = campaign_access_q(annotator=user)
    listed = Campaign.objects.filter(allowed).exclude(slug=DEFAULT_CAMPAIGN_SLUG).distinct()
    assert set(listed) == {everyone, named, grouped}
