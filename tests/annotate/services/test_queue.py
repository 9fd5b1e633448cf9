import dataclasses
from datetime import timedelta

import pytest
from django.db import IntegrityError, models
from django.template.loader import render_to_string
from django.utils import timezone

from annotate import selectors, services
from annotate.limits import REASON_MAX_CHARS
from annotate.models import Assignment, Judgement
from tests.annotate.factories import ComparisonFactory, UserFactory
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
