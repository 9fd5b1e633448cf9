from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from annotate import selectors, services
from annotate.filters import JudgementFilter
from annotate.models import AnnotatorFlag, Assignment, Comparison, Judgement, Purpose
from tests.annotate.factories import CampaignFactory, ComparisonFactory, GoldComparisonFactory, UserFactory
from tests.annotate.services._helpers import judge


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


def _vote(comparison, *, annotator=None, source="human"):
    return Judgement.objects.create(
        comparison=comparison,
        annotator=annotator,
        source=source,
        left_id=comparison.completion_a_id,
        right_id=comparison.completion_b_id,
        choice="left",
        winner_id=comparison.completion_a_id,
    )


@pytest.mark.django_db
def test_judgements_matching_leaves_out_an_excluded_annotator():
    comparison = ComparisonFactory(target_judgements=2)
    _vote(comparison, annotator=UserFactory(username="bot"))
    kept = _vote(comparison, annotator=UserFactory())
    matching = selectors.judgements_matching(judgement_filter=JudgementFilter(exclude_annotators=("bot",)))
    assert list(matching) == [kept]


@pytest.mark.django_db
def test_judgements_matching_leaves_out_judgements_imported_from_an_excluded_source():
    comparison = ComparisonFactory(target_judgements=2)
    _vote(comparison, source="gold.jsonl")
    kept = _vote(comparison, source="silver.jsonl")
    matching = selectors.judgements_matching(judgement_filter=JudgementFilter(exclude_sources=("gold.jsonl",)))
    assert list(matching) == [kept]


@pytest.mark.django_db
def test_an_excluded_source_keeps_peoples_judgements():
    person = _vote(ComparisonFactory(), annotator=UserFactory())
    matching = selectors.judgements_matching(judgement_filter=JudgementFilter(exclude_sources=("human",)))
    assert list(matching) == [person]


@pytest.mark.django_db
def test_judgements_matching_leaves_out_judgements_on_evaluation_comparisons():
    kept = _vote(ComparisonFactory(), annotator=UserFactory())
    _vote(ComparisonFactory(purpose=Purpose.EVALUATION), annotator=UserFactory())
    assert list(selectors.judgements_matching(judgement_filter=JudgementFilter())) == [kept]


@pytest.mark.django_db
def test_judgements_matching_keeps_evaluation_judgements_when_asked():
    training = _vote(ComparisonFactory(), annotator=UserFactory())
    evaluation = _vote(ComparisonFactory(purpose=Purpose.EVALUATION), annotator=UserFactory())
    matching = selectors.judgements_matching(judgement_filter=JudgementFilter(include_evaluation=True))
    assert list(matching) == [training, evaluation]


@pytest.mark.django_db
def test_judgements_matching_never_keeps_a_gold_item_judgement():
    kept = _vote(ComparisonFactory(), annotator=UserFactory())
    _vote(GoldComparisonFactory(), annotator=UserFactory())
    every = JudgementFilter(include_flagged=True, include_evaluation=True)
    assert list(selectors.judgements_matching(judgement_filter=every)) == [kept]


@pytest.mark.django_db
def test_judgements_matching_keeps_one_campaign_when_it_names_one():
    kept = _vote(ComparisonFactory(campaign=CampaignFactory(slug="harmless")), annotator=UserFactory())
    _vote(ComparisonFactory(campaign=CampaignFactory(slug="helpful")), annotator=UserFactory())
    matching = selectors.judgements_matching(judgement_filter=JudgementFilter(campaign="harmless"))
    assert list(matching) == [kept]


@pytest.mark.django_db
def test_judgements_matching_leaves_out_an_open_flagged_annotator_in_that_campaign_only():
    flagged, other = CampaignFactory(), CampaignFactory()
    person = UserFactory()
    AnnotatorFlag.objects.create(campaign=flagged, annotator=person, reason="gold", gold_seen=8, gold_correct=2)
    _vote(ComparisonFactory(campaign=flagged), annotator=person)
    kept = _vote(ComparisonFactory(campaign=other), annotator=person)
    assert list(selectors.judgements_matching(judgement_filter=JudgementFilter())) == [kept]


@pytest.mark.django_db
def test_judgements_matching_keeps_a_flagged_annotator_when_asked_or_once_cleared():
    campaign, person = CampaignFactory(), UserFactory()
    flag = AnnotatorFlag.objects.create(campaign=campaign, annotator=person, reason="gold", gold_seen=8, gold_correct=2)
    vote = _vote(ComparisonFactory(campaign=campaign), annotator=person)
    assert list(selectors.judgements_matching(judgement_filter=JudgementFilter(include_flagged=True))) == [vote]
    flag.cleared_at = timezone.now()
    flag.save()
    assert list(selectors.judgements_matching(judgement_filter=JudgementFilter())) == [vote]


@pytest.mark.django_db
def test_an_evaluation_comparison_never_becomes_a_preference_row():
    _vote(ComparisonFactory(), annotator=UserFactory())
    _vote(ComparisonFactory(purpose=Purpose.EVALUATION), annotator=UserFactory())
    rows = list(selectors.preference_rows(judgement_filter=JudgementFilter(), conversational=False))
    assert len(rows) == 1
    assert Comparison.objects.get(pk=rows[0]["comparison_id"]).purpose == Purpose.TRAINING


# Adjudication ---------------------------------------------------------------------------


def test_decide_an_adjudicated_completion_wins_against_the_majority():
    decision = selectors.decide(1, (10, 11), [("left", 10), ("left", 10), ("right", 11)], adjudicated_outcome="b")
    assert (decision.winner_id, decision.loser_id, decision.adjudicated) == (11, 10, True)
    assert decision.agreement == pytest.approx(1 / 3)


def test_decide_an_adjudicated_tie_has_no_winner():
    decision = selectors.decide(1, (10, 11), [("left", 10), ("left", 10)], adjudicated_outcome="tie")
    assert (decision.winner_id, decision.adjudicated) == (None, True)


def _judged(comparison, choice, *, flipped=False, user=None):
    left, right = (comparison.completion_b_id, comparison.completion_a_id) if flipped else (
        comparison.completion_a_id,
        comparison.completion_b_id,
    )
    return services.judgement_record_scripted(
        annotator=user or UserFactory(), comparison_id=comparison.id, left_id=left, right_id=right, choice=choice
    )


@pytest.mark.django_db
def test_split_comparisons_are_exactly_those_without_one_outcome_lowest_agreement_first():
    two_to_one, three_way, unanimous, single = ComparisonFactory.create_batch(4, target_judgements=3)
    for choice in ("left", "right", "tie"):
        _judged(three_way, choice)
    for choice in ("left", "left", "both_bad"):
        _judged(two_to_one, choice)
    _judged(unanimous, "left")
    _judged(unanimous, "right", flipped=True)
    _judged(single, "left")
    splits = selectors.comparisons_split()
    assert [(s.comparison_id, round(s.agreement, 3), s.num_judgements) for s in splits] == [
        (three_way.id, 0.333, 3),
        (two_to_one.id, 0.667, 3),
    ]


@pytest.mark.django_db
def test_split_cases_show_each_vote_as_the_completion_it_chose():
    comparison = ComparisonFactory(target_judgements=2)
    _judged(comparison, "left", flipped=True, user=UserFactory(username="flipped"))
    _judged(comparison, "left", user=UserFactory(username="straight"))
    (case,) = selectors.split_cases(splits=selectors.comparisons_split())
    assert [(v.judge, v.outcome) for v in case.votes] == [("flipped", "b"), ("straight", "a")]


@pytest.mark.django_db
def test_split_cases_time_on_card_runs_from_the_lease_to_the_vote_and_is_blank_for_an_import():
    comparison = ComparisonFactory(target_judgements=2)
    user = UserFactory()
    card = services.assignment_next(annotator=user)
    services.judgement_record(
        annotator=user, comparison_id=comparison.id, left_id=card.left.id, right_id=card.right.id, choice="tie"
    )
    Assignment.objects.filter(annotator=user).update(created_at=F("judged_at") - timedelta(seconds=42))
    _vote(comparison, source="gold.jsonl")
    (case,) = selectors.split_cases(splits=selectors.comparisons_split())
    assert [v.seconds_on_card for v in case.votes] == [42, None]


# Agreement and annotator reliability -------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """The server's clock, moved by hand: ``clock.advance(seconds)``."""

    class Clock:
        now = timezone.now()

        def advance(self, seconds):
            self.now += timedelta(seconds=seconds)

    fixed = Clock()
    monkeypatch.setattr(timezone, "now", lambda: fixed.now)
    return fixed


def _lease_and_vote(user, clock, seconds, choice="left"):
    card = services.assignment_next(annotator=user)
    clock.advance(seconds)
    return services.judgement_record(
        annotator=user, comparison_id=card.comparison_id, left_id=card.left.id, right_id=card.right.id, choice=choice
    )


def _reliability_of(username, **kwargs):
    return next(r for r in selectors.annotator_reliability(**kwargs).annotators if r.username == username)


@pytest.mark.django_db
def test_reliability_median_seconds_runs_from_lease_to_vote(hot_path, clock):
    ComparisonFactory.create_batch(3)
    user = UserFactory(username="ann")
    for seconds in (4, 30, 10):
        _lease_and_vote(user, clock, seconds)
        clock.advance(100)
    assert _reliability_of("ann").median_seconds == 10


@pytest.mark.django_db
def test_reliability_times_a_vote_after_an_undo_from_the_undo(clock):
    ComparisonFactory()
    user = UserFactory(username="ann")
    _lease_and_vote(user, clock, 5)
    clock.advance(60)
    services.judgement_undo_last(annotator=user)
    _lease_and_vote(user, clock, 2)
    assert _reliability_of("ann").median_seconds == 2


@pytest.mark.django_db
def test_reliability_counts_rushed_votes_below_the_setting(clock, settings):
    settings.DUET_RUSHED_SECONDS = 6
    ComparisonFactory.create_batch(3)
    user = UserFactory(username="ann")
    for seconds in (1, 5, 7):
        _lease_and_vote(user, clock, seconds)
    assert _reliability_of("ann").rushed == 2


@pytest.mark.django_db
def test_reliability_maps_sides_to_completions():
    comparison = ComparisonFactory(target_judgements=2)
    a, b = comparison.completion_a_id, comparison.completion_b_id
    for name, left, right, choice in (("ann", a, b, "left"), ("bob", b, a, "right")):
        user = UserFactory(username=name)
        services.judgement_record_scripted(
            annotator=user, comparison_id=comparison.id, left_id=left, right_id=right, choice=choice
        )
    assert _reliability_of("ann").agreement == 1.0


@pytest.mark.django_db
def test_reliability_leaves_out_evaluation_comparisons():
    _vote(ComparisonFactory(purpose=Purpose.EVALUATION), annotator=UserFactory(username="ann"))
    assert selectors.annotator_reliability().annotators == []


@pytest.mark.django_db
def test_reliability_leaves_out_imported_judgements():
    comparison = ComparisonFactory(target_judgements=2)
    _vote(comparison, source="gold.jsonl")
    _vote(comparison, annotator=UserFactory(username="ann"))
    assert _reliability_of("ann").agreement is None


@pytest.mark.django_db
def test_reliability_takes_a_judgement_filter():
    _vote(ComparisonFactory(), annotator=UserFactory(username="ann"))
    _vote(ComparisonFactory(), annotator=UserFactory(username="bob"))
    rows = selectors.annotator_reliability(judgement_filter=JudgementFilter(exclude_annotators=("bob",))).annotators
    assert [r.username for r in rows] == ["ann"]


@pytest.mark.django_db
def test_reliability_alpha_over_people_who_agree_is_one():
    for choice in ("left", "right", "tie"):
        comparison = ComparisonFactory(target_judgements=2)
        for name in ("ann", "bob"):
            judge(UserFactory(username=name), comparison, choice)
    assert selectors.annotator_reliability().alpha.nominal == pytest.approx(1.0)
