import pytest

from annotate import selectors, services
from tests.annotate.factories import ComparisonFactory, UserFactory


def test_decide_majority_side_wins_with_its_share():
    decision = selectors.decide(1, (10, 11), [("left", 10), ("right", 10), ("tie", None)])
    assert (decision.winner_id, decision.loser_id) == (10, 11)
    assert decision.agreement == pytest.approx(2 / 3)


def test_decide_even_split_has_no_winner():
    assert selectors.decide(1, (10, 11), [("left", 10), ("right", 11)]).winner_id is None


def test_decide_tie_majority_has_no_winner():
    assert selectors.decide(1, (10, 11), [("tie", None), ("tie", None), ("left", 10)]).winner_id is None


@pytest.mark.django_db
def test_progress_counts_open_slots_the_annotator_has_not_seen():
    ComparisonFactory.create_batch(3, target_judgements=2)
    user = UserFactory()
    services.assignment_next(annotator=user)
    progress = selectors.annotator_progress(annotator=user)
    assert (progress.judged_today, progress.remaining) == (0, 2 * 2 + 1)
