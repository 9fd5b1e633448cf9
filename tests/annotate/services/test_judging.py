"""``annotate/services/judging.py``, tried the way a hostile annotator would: a vote counts only for
the comparison leased to its annotator, in the order shown, and an undo takes back one vote once."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, Comparison, Judgement
from tests.annotate.factories import CampaignFactory, ComparisonFactory, UserFactory
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.django_db


def _vote(user, card, choice="left", **kwargs):
    """The vote a well-behaved client sends for the card it was shown."""
    return services.judgement_record(
        annotator=user,
        comparison_id=card.comparison_id,
        left_id=card.left.id,
        right_id=card.right.id,
        choice=choice,
        **kwargs,
    )


def _live_leases(user) -> int:
    return Assignment.objects.filter(
        annotator=user, judged_at__isnull=True, skipped_at__isnull=True, expires_at__gt=timezone.now()
    ).count()


def _nothing_taken(comparison) -> bool:
    comparison.refresh_from_db()
    return comparison.judgement_count == 0 and not Judgement.objects.filter(comparison=comparison).exists()


# A vote for the lease ------------------------------------------------------------------------


@pytest.mark.usefixtures("hot_path")
def test_a_vote_for_the_leased_card_is_recorded_in_the_order_shown_and_closes_the_lease():
    ComparisonFactory()
    user = UserFactory()
    card = services.lease_take(annotator=user)
    judgement = _vote(user, card)
    lease = Assignment.objects.get(id=card.assignment_id)
    assert (judgement.left_id, judgement.right_id, lease.judged_at is not None) == (card.left.id, card.right.id, True)


@pytest.mark.usefixtures("hot_path")
def test_judgement_records_winner_and_counts():
    comparison = ComparisonFactory()
    user = UserFactory()
    card = services.lease_take(annotator=user)
    judgement = _vote(user, card, "right", strength="clearly", reason="more precise")
    comparison.refresh_from_db()
    assert (judgement.winner_id, comparison.judgement_count) == (card.right.id, 1)


@pytest.mark.usefixtures("hot_path")
def test_a_vote_costs_one_statement_on_postgresql_and_three_writes_on_the_orm():
    ComparisonFactory()
    user = UserFactory()
    card = services.lease_take(annotator=user)
    with CaptureQueriesContext(connection) as queries:
        _vote(user, card)
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    one_statement = connection.vendor == "postgresql" and statements[0].lstrip().startswith("WITH")
    assert len(statements) == (1 if one_statement else 3)


@pytest.mark.usefixtures("hot_path")
def test_a_second_vote_on_the_same_lease_conflicts_and_counts_once():
    comparison = ComparisonFactory(target_judgements=2)
    user = UserFactory()
    card = services.lease_take(annotator=user)
    _vote(user, card)
    with pytest.raises(services.JudgementConflict, match="already judged"):
        _vote(user, card, "right")
    comparison.refresh_from_db()
    assert comparison.judgement_count == 1


# Votes that are not for the voter's lease ----------------------------------------------------


@pytest.mark.usefixtures("hot_path")
def test_a_vote_on_a_comparison_leased_to_someone_else_is_refused_and_their_vote_still_counts():
    comparison = ComparisonFactory()
    alice, bob = UserFactory(), UserFactory()
    bobs = services.lease_take(annotator=bob)
    with pytest.raises(services.JudgementConflict, match="not the one shown to you"):
        _vote(alice, bobs)
    assert _nothing_taken(comparison)
    assert not Assignment.objects.filter(annotator=alice).exists()
    assert _vote(bob, bobs).pk is not None


@pytest.mark.usefixtures("hot_path")
def test_a_vote_on_a_comparison_never_shown_takes_no_slot_and_no_lease():
    comparison = ComparisonFactory()
    user = UserFactory()
    with pytest.raises(services.JudgementConflict, match="not the one shown to you"):
        services.judgement_record(
            annotator=user,
            comparison_id=comparison.id,
            left_id=comparison.completion_a_id,
            right_id=comparison.completion_b_id,
            choice="left",
        )
    assert _nothing_taken(comparison)
    assert not Assignment.objects.exists()


@pytest.mark.usefixtures("hot_path")
def test_guessing_ids_learns_nothing_the_refusal_of_a_real_comparison_does_not_say():
    comparison, other = ComparisonFactory.create_batch(2)
    user = UserFactory()
    services.lease_take(annotator=user)
    refusals = []
    for comparison_id, left, right in (
        (other.id, other.completion_a_id, other.completion_b_id),
        (other.id, other.completion_a_id, comparison.completion_a_id),
    ):
        with pytest.raises(services.JudgementConflict) as refused:
            services.judgement_record(
                annotator=user, comparison_id=comparison_id, left_id=left, right_id=right, choice="left"
            )
        refusals.append(str(refused.value))
    assert refusals[0] == refusals[1]


@pytest.mark.usefixtures("hot_path")
def test_a_vote_with_the_sides_swapped_is_refused_and_the_lease_stays_open():
    comparison = ComparisonFactory()
    user = UserFactory()
    card = services.lease_take(annotator=user)
    with pytest.raises(services.JudgementConflict, match="as you were shown them"):
        services.judgement_record(
            annotator=user,
            comparison_id=card.comparison_id,
            left_id=card.right.id,
            right_id=card.left.id,
            choice="left",
        )
    assert _nothing_taken(comparison)
    assert _live_leases(user) == 1


@pytest.mark.usefixtures("hot_path")
def test_a_vote_on_an_expired_lease_is_refused():
    comparison = ComparisonFactory()
    user = UserFactory()
    card = services.lease_take(annotator=user)
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(services.JudgementConflict, match="expired"):
        _vote(user, card)
    assert _nothing_taken(comparison)


@pytest.mark.usefixtures("hot_path")
def test_an_expired_lease_cannot_take_the_slot_of_whoever_leased_it_next():
    ComparisonFactory()
    slow, fast = UserFactory(), UserFactory()
    slows = services.lease_take(annotator=slow)
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    fasts = services.lease_take(annotator=fast)
    with pytest.raises(services.JudgementConflict):
        _vote(slow, slows)
    assert _vote(fast, fasts).comparison_id == fasts.comparison_id


@pytest.mark.usefixtures("hot_path")
def test_a_vote_on_a_skipped_comparison_is_refused():
    comparison = ComparisonFactory()
    user = UserFactory()
    card = services.lease_take(annotator=user)
    services.assignment_skip(annotator=user, comparison_id=card.comparison_id)
    with pytest.raises(services.JudgementConflict, match="skipped"):
        _vote(user, card)
    assert _nothing_taken(comparison)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"choice": "maybe"}, "choice must be one of"),
        ({"strength": "hugely"}, "strength must be one of"),
        ({"choice": "tie", "strength": "much"}, "only applies"),
        ({"reason": "x" * 1001}, "reason is longer than 1000"),
        ({"reason": "a\x00b"}, "reason contains a NUL"),
        ({"reason": "a\ud800b"}, "reason contains a lone surrogate"),
    ],
)
def test_invalid_judgements_are_refused_before_anything_is_written(kwargs, message):
    comparison = ComparisonFactory()
    user = UserFactory()
    card = services.lease_take(annotator=user)
    with pytest.raises(services.JudgementInvalid, match=message):
        _vote(user, card, **{"choice": "left", **kwargs})
    assert _nothing_taken(comparison)


# The scripted judge (oracles, commands) --------------------------------------------------------


@pytest.mark.usefixtures("hot_path")
def test_a_scripted_judge_records_the_sides_it_chose():
    comparison = ComparisonFactory()
    judgement = judge(UserFactory(), comparison, "right")
    assert (judgement.left_id, judgement.winner_id) == (comparison.completion_a_id, comparison.completion_b_id)


@pytest.mark.usefixtures("hot_path")
def test_a_scripted_judge_does_not_take_a_slot_held_by_a_live_lease():
    comparison = ComparisonFactory(target_judgements=1)
    services.lease_take(annotator=UserFactory())
    with pytest.raises(services.JudgementConflict, match="all the judgements"):
        judge(UserFactory(), comparison)
    assert _nothing_taken(comparison)


@pytest.mark.usefixtures("hot_path")
def test_a_scripted_judge_refuses_completions_of_another_comparison():
    comparison, other = ComparisonFactory.create_batch(2)
    with pytest.raises(services.JudgementInvalid, match="two completions"):
        services.judgement_record_scripted(
            annotator=UserFactory(),
            comparison_id=comparison.id,
            left_id=comparison.completion_a_id,
            right_id=other.completion_a_id,
            choice="left",
        )


# Undo ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("hot_path")
def test_undo_removes_the_last_judgement_and_brings_it_back():
    first, _second = ComparisonFactory.create_batch(2)
    user = UserFactory()
    card = services.lease_take(annotator=user)
    _vote(user, card)
    services.judgement_undo_last(annotator=user)
    first.refresh_from_db()
    assert (Judgement.objects.count(), first.judgement_count) == (0, 0)
    assert services.lease_take(annotator=user).assignment_id == card.assignment_id


@pytest.mark.usefixtures("hot_path")
def test_undo_returns_the_removed_judgement_with_its_id():
    ComparisonFactory()
    user = UserFactory()
    judgement = _vote(user, services.lease_take(annotator=user), "right")
    undone = services.judgement_undo_last(annotator=user)
    assert (undone.id, undone.choice) == (judgement.id, "right")


@pytest.mark.usefixtures("hot_path")
def test_a_retried_undo_takes_back_nothing_more():
    ComparisonFactory.create_batch(2)
    user = UserFactory()
    kept = _vote(user, services.lease_take(annotator=user))
    _vote(user, services.lease_take(annotator=user))
    services.judgement_undo_last(annotator=user)
    assert services.judgement_undo_last(annotator=user) is None
    assert list(Judgement.objects.values_list("id", flat=True)) == [kept.id]


@pytest.mark.usefixtures("hot_path")
def test_a_judgement_made_again_after_an_undo_can_be_undone():
    ComparisonFactory()
    user = UserFactory()
    _vote(user, services.lease_take(annotator=user))
    services.judgement_undo_last(annotator=user)
    again = _vote(user, services.lease_take(annotator=user), "tie")
    assert services.judgement_undo_last(annotator=user).id == again.id


@pytest.mark.usefixtures("hot_path")
def test_undo_trades_the_open_lease_for_the_undone_one():
    _first, second = ComparisonFactory.create_batch(2)
    user, other = UserFactory(), UserFactory()
    _vote(user, services.lease_take(annotator=user))
    assert services.lease_take(annotator=user).comparison_id == second.id
    services.judgement_undo_last(annotator=user)
    assert _live_leases(user) == 1
    assert services.lease_take(annotator=other).comparison_id == second.id


@pytest.mark.usefixtures("hot_path")
def test_judge_and_undo_loops_never_hoard_leases():
    ComparisonFactory.create_batch(3)
    hoarder, bob = UserFactory(), UserFactory()
    for _ in range(5):
        card = services.lease_take(annotator=hoarder)
        _vote(hoarder, card)
        services.lease_take(annotator=hoarder)
        services.judgement_undo_last(annotator=hoarder)
        assert _live_leases(hoarder) == 1
    assert services.lease_take(annotator=bob) is not None


@pytest.mark.usefixtures("hot_path")
def test_a_judgement_a_finished_run_trained_on_cannot_be_undone():
    ComparisonFactory()
    user = UserFactory()
    judgement = _vote(user, services.lease_take(annotator=user))
    services.judgements_mark_trained(judgement_ids=[judgement.id])
    with pytest.raises(services.JudgementConflict, match="training run"):
        services.judgement_undo_last(annotator=user)
    assert Judgement.objects.filter(id=judgement.id).exists()
    assert Comparison.objects.get().judgement_count == 1


def test_marking_judgements_trained_marks_only_those_named():
    first, second = ComparisonFactory.create_batch(2)
    user = UserFactory()
    trained, untrained = judge(user, first), judge(user, second)
    assert services.judgements_mark_trained(judgement_ids=[trained.id]) == 1
    marked = Judgement.objects.filter(trained_at__isnull=False).values_list("id", flat=True)
    assert (list(marked), untrained.id in marked) == ([trained.id], False)


# Undo within a campaign ------------------------------------------------------------------------


@pytest.mark.usefixtures("hot_path")
def test_undo_in_a_campaign_takes_back_the_latest_judgement_there_not_a_later_one_elsewhere():
    first, second = CampaignFactory(), CampaignFactory()
    ComparisonFactory(campaign=first, target_judgements=2)
    ComparisonFactory(campaign=second, target_judgements=2)
    user = UserFactory()
    in_first = _vote(user, services.lease_take(annotator=user, campaign=first))
    _vote(user, services.lease_take(annotator=user, campaign=second))
    undone = services.judgement_undo_last(annotator=user, campaign=first)
    assert undone.id == in_first.id
    assert list(Judgement.objects.values_list("comparison__campaign", flat=True)) == [second.id]


@pytest.mark.usefixtures("hot_path")
def test_undo_in_a_campaign_without_judgements_there_takes_back_nothing():
    first, second = CampaignFactory(), CampaignFactory()
    ComparisonFactory(campaign=first)
    user = UserFactory()
    _vote(user, services.lease_take(annotator=user, campaign=first))
    assert services.judgement_undo_last(annotator=user, campaign=second) is None
    assert Judgement.objects.count() == 1


@pytest.mark.usefixtures("hot_path")
def test_an_undo_in_one_campaign_does_not_block_the_next_undo_in_another():
    first, second = CampaignFactory(), CampaignFactory()
    ComparisonFactory(campaign=first)
    ComparisonFactory(campaign=second)
    user = UserFactory()
    _vote(user, services.lease_take(annotator=user, campaign=first))
    in_second = _vote(user, services.lease_take(annotator=user, campaign=second))
    services.judgement_undo_last(annotator=user, campaign=first)
    assert services.judgement_undo_last(annotator=user, campaign=second).id == in_second.id
