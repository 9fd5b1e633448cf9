import pytest

from annotate import services
from annotate.models import Assignment, Judgement
from tests.annotate.factories import ComparisonFactory, UserFactory
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("hot_path")
def test_judging_without_a_lease_records_the_sides_shown():
    comparison = ComparisonFactory()
    user = UserFactory()
    services.judgement_record(
        annotator=user,
        comparison_id=comparison.id,
        left_id=comparison.completion_b_id,
        right_id=comparison.completion_a_id,
        choice="left",
    )
    lease = Assignment.objects.get(annotator=user, comparison=comparison)
    assert (lease.left_id, lease.judged_at is not None) == (comparison.completion_b_id, True)


@pytest.mark.usefixtures("hot_path")
def test_judgement_records_winner_and_counts():
    comparison = ComparisonFactory()
    user = UserFactory()
    judgement = services.judgement_record(
        annotator=user,
        comparison_id=comparison.id,
        left_id=comparison.completion_b_id,
        right_id=comparison.completion_a_id,
        choice="left",
        strength="clearly",
        reason="more precise",
    )
    comparison.refresh_from_db()
    assert (judgement.winner_id, comparison.judgement_count) == (comparison.completion_b_id, 1)


@pytest.mark.usefixtures("hot_path")
def test_second_judgement_by_the_same_annotator_conflicts():
    comparison = ComparisonFactory(target_judgements=2)
    user = UserFactory()
    judge(user, comparison)
    with pytest.raises(services.JudgementConflict, match="already judged"):
        judge(user, comparison, "right")
    comparison.refresh_from_db()
    assert comparison.judgement_count == 1


@pytest.mark.usefixtures("hot_path")
def test_a_full_comparison_refuses_more_judgements():
    comparison = ComparisonFactory(target_judgements=1)
    judge(UserFactory(), comparison)
    with pytest.raises(services.JudgementConflict, match="all the judgements"):
        judge(UserFactory(), comparison)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"choice": "maybe"}, "choice must be one of"),
        ({"strength": "hugely"}, "strength must be one of"),
        ({"choice": "tie", "strength": "much"}, "only applies"),
        ({"reason": "x" * 1001}, "longer than 1000"),
    ],
)
def test_invalid_judgements_are_refused(kwargs, message):
    comparison = ComparisonFactory()
    with pytest.raises(services.JudgementInvalid, match=message):
        judge(UserFactory(), comparison, **{"choice": "left", **kwargs})


@pytest.mark.usefixtures("hot_path")
def test_judgement_must_name_the_comparisons_completions():
    comparison, other = ComparisonFactory.create_batch(2)
    with pytest.raises(services.JudgementInvalid, match="two completions"):
        services.judgement_record(
            annotator=UserFactory(),
            comparison_id=comparison.id,
            left_id=comparison.completion_a_id,
            right_id=other.completion_a_id,
            choice="left",
        )


@pytest.mark.usefixtures("hot_path")
def test_undo_removes_the_last_judgement_and_brings_it_back():
    first, _second = ComparisonFactory.create_batch(2)
    user = UserFactory()
    card = services.assignment_next(annotator=user)
    judge(user, first)
    services.judgement_undo_last(annotator=user)
    first.refresh_from_db()
    assert (Judgement.objects.count(), first.judgement_count) == (0, 0)
    assert services.assignment_next(annotator=user).assignment_id == card.assignment_id
