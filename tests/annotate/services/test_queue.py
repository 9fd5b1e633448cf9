import dataclasses
import random
from datetime import timedelta

import pytest
from django.db import IntegrityError, models
from django.template.loader import render_to_string
from django.utils import timezone

from annotate import selectors, services
from annotate.limits import REASON_MAX_CHARS
from annotate.models import Assignment, CampaignAccess, CampaignStatus, Judgement
from annotate.services import queue
from tests.annotate.factories import CampaignFactory, ComparisonFactory, GoldComparisonFactory, UserFactory
from tests.annotate.services._helpers import judge

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("hot_path")]


def test_assignment_gives_the_oldest_open_comparison():
    first, _ = ComparisonFactory.create_batch(2)
    card = services.assignment_next(annotator=UserFactory())
    assert card.comparison_id == first.id
    assert {card.left.id, card.right.id} == {first.completion_a_id, first.completion_b_id}


def test_assignment_is_stable_until_judged():
    ComparisonFactory.create_batch(2)
    user = UserFactory()
    first = services.assignment_next(annotator=user)
    assert services.assignment_next(annotator=user).assignment_id == first.assignment_id


def test_a_leased_comparison_is_not_given_to_a_second_annotator_when_k_is_1():
    ComparisonFactory()
    services.assignment_next(annotator=UserFactory())
    assert services.assignment_next(annotator=UserFactory()) is None


def test_an_expired_lease_frees_the_slot():
    ComparisonFactory()
    services.assignment_next(annotator=UserFactory())
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.assignment_next(annotator=UserFactory()) is not None


def test_an_annotator_never_sees_a_judged_comparison_again():
    comparison = ComparisonFactory(target_judgements=3)
    user = UserFactory()
    services.assignment_next(annotator=user)
    judge(user, comparison)
    assert services.assignment_next(annotator=user) is None


def test_side_order_is_randomised_per_annotator():
    comparison = ComparisonFactory(target_judgements=40)
    lefts = {services.assignment_next(annotator=UserFactory()).left.id for _ in range(40)}
    assert lefts == {comparison.completion_a_id, comparison.completion_b_id}


def test_a_card_shows_the_leased_comparison_as_leased():
    comparison = ComparisonFactory()
    card = services.assignment_next(annotator=UserFactory())
    lease = Assignment.objects.select_related("left", "right").get()
    shown = (card.assignment_id, card.prompt, card.left, card.right, card.expires_at)
    assert shown == (
        lease.id,
        tuple(comparison.prompt.messages),
        services.CardSide(id=lease.left_id, text=lease.left.text),
        services.CardSide(id=lease.right_id, text=lease.right.text),
        lease.expires_at,
    )


def test_a_card_holds_plain_values_only():
    ComparisonFactory()
    card = services.assignment_next(annotator=UserFactory())
    values = dataclasses.astuple(card)
    assert not any(isinstance(value, models.Model) for value in values)


def test_a_card_renders_without_further_queries(django_assert_num_queries):
    ComparisonFactory()
    card = services.assignment_next(annotator=UserFactory())
    context = {
        "card": card,
        "progress": selectors.Progress(judged_today=0, judged_total=0, remaining=1),
        "strengths": Judgement.Strength.choices,
        "reason_max_chars": REASON_MAX_CHARS,
    }
    with django_assert_num_queries(0):
        html = render_to_string("annotate/_card.html", context)
    assert f'data-completion="{card.left.id}"' in html


def test_an_expired_own_lease_on_a_comparison_others_filled_is_released():
    filled, second = ComparisonFactory.create_batch(2)
    slow, fast = UserFactory(), UserFactory()
    services.assignment_next(annotator=slow)
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    fast_card = services.assignment_next(annotator=fast)
    services.judgement_record(
        annotator=fast,
        comparison_id=fast_card.comparison_id,
        left_id=fast_card.left.id,
        right_id=fast_card.right.id,
        choice="left",
    )
    assert services.assignment_next(annotator=slow).comparison_id == second.id
    assert not Assignment.objects.filter(annotator=slow, comparison=filled).exists()


def test_skip_moves_on_and_never_returns():
    first, second = ComparisonFactory.create_batch(2)
    user = UserFactory()
    services.assignment_next(annotator=user)
    services.assignment_skip(annotator=user, comparison_id=first.id)
    assert services.assignment_next(annotator=user).comparison_id == second.id


def test_an_expired_own_lease_is_not_renewed_over_someone_elses_live_lease():
    ComparisonFactory(target_judgements=1)
    slow, fast = UserFactory(), UserFactory()
    services.assignment_next(annotator=slow)
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    services.assignment_next(annotator=fast)
    assert services.assignment_next(annotator=slow) is None
    live = Assignment.objects.filter(judged_at__isnull=True, skipped_at__isnull=True, expires_at__gt=timezone.now())
    assert list(live.values_list("annotator", flat=True)) == [fast.id]


def test_an_expired_own_lease_comes_back_while_its_slot_is_free():
    ComparisonFactory.create_batch(2)
    user = UserFactory()
    first = services.assignment_next(annotator=user)
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    again = services.assignment_next(annotator=user)
    assert (again.comparison_id, Assignment.objects.filter(annotator=user).count()) == (first.comparison_id, 1)


def test_the_database_refuses_a_second_open_assignment_for_one_annotator():
    _first, second = ComparisonFactory.create_batch(2)
    user = UserFactory()
    card = services.assignment_next(annotator=user)
    with pytest.raises(IntegrityError):
        Assignment.objects.create(
            comparison=second,
            annotator=user,
            left_id=second.completion_a_id,
            right_id=second.completion_b_id,
            expires_at=card.expires_at,
        )


# Campaigns and gold items ------------------------------------------------------------------


def _lease(user, campaign, **kwargs):
    return services.lease_take(annotator=user, campaign=campaign, **kwargs)


def _judge_card(user, card):
    services.judgement_record(
        annotator=user, comparison_id=card.comparison_id, left_id=card.left.id, right_id=card.right.id, choice="left"
    )


def test_a_campaign_serves_only_its_own_comparisons():
    other, mine = CampaignFactory(), CampaignFactory()
    ComparisonFactory(campaign=other)
    wanted = ComparisonFactory(campaign=mine)
    assert _lease(UserFactory(), mine).comparison_id == wanted.id


def test_no_campaign_means_the_default_one():
    ComparisonFactory(campaign=CampaignFactory())
    default = ComparisonFactory()
    assert services.lease_take(annotator=UserFactory()).comparison_id == default.id


def test_an_open_lease_in_another_campaign_is_released_not_renewed():
    first, second = CampaignFactory(), CampaignFactory()
    ComparisonFactory(campaign=first)
    wanted = ComparisonFactory(campaign=second)
    user = UserFactory()
    _lease(user, first)
    assert _lease(user, second).comparison_id == wanted.id
    assert list(Assignment.objects.filter(annotator=user).values_list("comparison_id", flat=True)) == [wanted.id]


def test_gold_rate_one_serves_a_gold_item_first():
    campaign = CampaignFactory(gold_rate=1.0)
    ComparisonFactory(campaign=campaign)
    gold = GoldComparisonFactory(campaign=campaign)
    assert _lease(UserFactory(), campaign).comparison_id == gold.id


def test_gold_rate_zero_never_serves_a_gold_item():
    campaign = CampaignFactory(gold_rate=0.0)
    GoldComparisonFactory(campaign=campaign)
    assert _lease(UserFactory(), campaign) is None


def test_a_gold_item_is_never_served_twice_to_one_annotator():
    campaign = CampaignFactory(gold_rate=1.0)
    gold = GoldComparisonFactory(campaign=campaign)
    ordinary = ComparisonFactory(campaign=campaign)
    user = UserFactory()
    _judge_card(user, _lease(user, campaign))
    assert _lease(user, campaign).comparison_id == ordinary.id
    assert Judgement.objects.get(annotator=user).comparison_id == gold.id


def test_a_gold_item_is_served_to_every_annotator():
    campaign = CampaignFactory(gold_rate=1.0)
    gold = GoldComparisonFactory(campaign=campaign)
    users = UserFactory.create_batch(3)
    for user in users:
        _judge_card(user, _lease(user, campaign))
    assert Judgement.objects.filter(comparison=gold).count() == 3


def test_gold_items_come_at_about_the_campaigns_rate(monkeypatch):
    monkeypatch.setattr(queue, "gold_random", random.Random(7))
    campaign = CampaignFactory(gold_rate=0.25)
    gold_ids = {g.id for g in GoldComparisonFactory.create_batch(60, campaign=campaign)}
    ComparisonFactory.create_batch(200, campaign=campaign)
    user = UserFactory()
    served = []
    for _ in range(200):
        card = _lease(user, campaign)
        served.append(card.comparison_id in gold_ids)
        _judge_card(user, card)
    assert 0.18 <= sum(served) / len(served) <= 0.32


def test_an_ordinary_card_when_no_gold_item_is_left():
    campaign = CampaignFactory(gold_rate=1.0)
    ordinary = ComparisonFactory(campaign=campaign)
    assert _lease(UserFactory(), campaign).comparison_id == ordinary.id


def test_gold_items_do_not_fill_the_queue_of_a_campaign_without_gold_rate():
    campaign = CampaignFactory(gold_rate=0.0)
    GoldComparisonFactory(campaign=campaign)
    ordinary = ComparisonFactory(campaign=campaign)
    assert _lease(UserFactory(), campaign).comparison_id == ordinary.id


@pytest.mark.parametrize(
    ("settings_", "reason"),
    [
        ({"status": CampaignStatus.PAUSED}, "paused"),
        ({"status": CampaignStatus.CLOSED}, "closed"),
        ({"access": CampaignAccess.USERS}, "forbidden"),
    ],
)
def test_a_refused_queue_leases_nothing(settings_, reason):
    campaign = CampaignFactory(**settings_)
    ComparisonFactory(campaign=campaign)
    with pytest.raises(services.QueueRefused) as refused:
        _lease(UserFactory(), campaign)
    assert (refused.value.reason, Assignment.objects.count()) == (reason, 0)


def test_gold_picks_start_at_a_random_gold_item_so_annotators_spread_over_them():
    campaign = CampaignFactory(gold_rate=1.0)
    GoldComparisonFactory.create_batch(20, campaign=campaign)
    served = {_lease(UserFactory(), campaign).comparison_id for _ in range(10)}
    assert len(served) > 1


def test_a_gold_pick_wraps_around_to_the_gold_items_before_its_start():
    campaign = CampaignFactory(gold_rate=1.0)
    first, *later = GoldComparisonFactory.create_batch(4, campaign=campaign)
    users = UserFactory.create_batch(5)
    for user in users:
        for gold in later:
            judge(user, gold)
    # Each start falls above the first item three times in four: five annotators make a miss show.
    assert {_lease(user, campaign).comparison_id for user in users} == {first.id}
