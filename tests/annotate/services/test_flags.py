"""annotator_flag_check after gold votes, and annotator_unflag: a staff action with an audit line."""

import random

import pytest

from annotate import selectors, services
from annotate.models import AnnotatorFlag, AuditAction, AuditEntry
from annotate.services import judging
from tests.annotate.factories import (
    CampaignFactory,
    ComparisonFactory,
    GoldComparisonFactory,
    StaffFactory,
    UserFactory,
)
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.django_db


def _answer_gold(user, campaign, *, right: int, wrong: int):
    """Vote on fresh gold items of ``campaign`` (each expects completion a): ``right`` correctly, then ``wrong``."""
    for choice in ["left"] * right + ["right"] * wrong:
        judge(user, GoldComparisonFactory(campaign=campaign), choice)


@pytest.mark.usefixtures("hot_path")
def test_a_gold_vote_that_takes_accuracy_below_the_threshold_flags_the_annotator():
    campaign, user = CampaignFactory(gold_min=4, gold_threshold=0.7), UserFactory()
    _answer_gold(user, campaign, right=2, wrong=2)
    flag = AnnotatorFlag.objects.get(campaign=campaign, annotator=user, cleared_at__isnull=True)
    assert (flag.gold_seen, flag.gold_correct) == (4, 2)


@pytest.mark.usefixtures("hot_path")
def test_nobody_is_flagged_before_answering_gold_min_gold_items():
    campaign, user = CampaignFactory(gold_min=4, gold_threshold=0.7), UserFactory()
    _answer_gold(user, campaign, right=0, wrong=3)
    assert not AnnotatorFlag.objects.filter(annotator=user).exists()


def test_accuracy_at_the_threshold_raises_no_flag():
    campaign, user = CampaignFactory(gold_min=4, gold_threshold=0.75), UserFactory()
    _answer_gold(user, campaign, right=3, wrong=1)
    assert not AnnotatorFlag.objects.filter(annotator=user).exists()


def test_the_flag_says_why_in_words():
    campaign, user = CampaignFactory(gold_min=10, gold_threshold=0.7), UserFactory()
    _answer_gold(user, campaign, right=4, wrong=6)
    flag = AnnotatorFlag.objects.get(annotator=user)
    assert flag.reason == "gold accuracy 4/10 = 40% (95% CI 17\u201369%) below 70% after 10 gold items"


def test_a_flagged_annotator_gets_no_second_open_flag():
    campaign, user = CampaignFactory(gold_min=2, gold_threshold=0.7), UserFactory()
    _answer_gold(user, campaign, right=0, wrong=4)
    assert AnnotatorFlag.objects.filter(annotator=user).count() == 1
    assert services.annotator_flag_check(campaign=campaign, annotator=user) is None


def test_a_vote_on_an_ordinary_comparison_checks_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(judging, "annotator_flag_check", lambda **kwargs: calls.append(kwargs))
    judge(UserFactory(), ComparisonFactory(), "right")
    assert calls == []


def test_flags_are_per_campaign():
    noisy, other, user = CampaignFactory(gold_min=2), CampaignFactory(gold_min=2), UserFactory()
    _answer_gold(user, noisy, right=0, wrong=2)
    _answer_gold(user, other, right=2, wrong=0)
    assert list(AnnotatorFlag.objects.filter(annotator=user).values_list("campaign_id", flat=True)) == [noisy.id]


def _flagged(**campaign_fields):
    campaign, user = CampaignFactory(gold_min=2, gold_threshold=0.7, **campaign_fields), UserFactory()
    _answer_gold(user, campaign, right=0, wrong=2)
    return AnnotatorFlag.objects.get(annotator=user)


def test_unflagging_clears_the_flag_and_names_who():
    flag, staff = _flagged(), StaffFactory()
    services.annotator_unflag(flag=flag, actor=staff, note="spoke to them")
    flag.refresh_from_db()
    assert (flag.cleared_by, flag.cleared_at is not None) == (staff, True)
    assert selectors.open_flags() == []


def test_unflagging_writes_an_audit_line():
    flag = _flagged()
    services.annotator_unflag(flag=flag, actor=StaffFactory(), note="spoke to them")
    line = AuditEntry.objects.get(action=AuditAction.UNFLAG)
    assert (line.target_id, line.detail["annotator"], line.detail["note"]) == (
        str(flag.pk),
        flag.annotator.username,
        "spoke to them",
    )


def test_a_cleared_flag_cannot_be_cleared_again():
    flag, staff = _flagged(), StaffFactory()
    services.annotator_unflag(flag=flag, actor=staff)
    with pytest.raises(services.FlagNotOpen):
        services.annotator_unflag(flag=flag, actor=staff)
    assert AuditEntry.objects.filter(action=AuditAction.UNFLAG).count() == 1


def test_after_unflagging_only_later_gold_answers_count():
    flag = _flagged()
    services.annotator_unflag(flag=flag, actor=StaffFactory())
    _answer_gold(flag.annotator, flag.campaign, right=1, wrong=0)
    assert selectors.gold_scores(campaign=flag.campaign)[flag.annotator_id].seen == 1
    assert selectors.open_flags() == []


def test_open_flags_lists_one_campaigns_flags():
    first, second = _flagged(), _flagged()
    assert selectors.open_flags(campaign=second.campaign) == [second]
    assert selectors.open_flags() == [first, second]


def test_of_two_consistent_annotators_and_one_clicking_at_random_only_the_random_one_is_flagged():
    campaign = CampaignFactory(gold_min=10, gold_threshold=0.7)
    items = GoldComparisonFactory.create_batch(30, campaign=campaign)
    careful, steady, clicker = UserFactory(), UserFactory(), UserFactory()
    coin = random.Random(20261203)
    for item in items:
        judge(careful, item, "left")
        judge(steady, item, "left")
        judge(clicker, item, coin.choice(["left", "right"]))
    assert [flag.annotator for flag in selectors.open_flags(campaign=campaign)] == [clicker]
