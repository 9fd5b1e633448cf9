"""judgements_matching's quality rules: flagged annotators, rushed votes, gold items, and the campaign column."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate import selectors, services
from annotate.filters import TRUSTED_JUDGEMENTS, JudgementFilter
from annotate.models import AnnotatorFlag, Assignment
from tests.annotate.factories import CampaignFactory, ComparisonFactory, GoldComparisonFactory, UserFactory
from tests.annotate.services._helpers import PAIRS, import_pairs, judge

pytestmark = pytest.mark.django_db


def _kept(judgement_filter=TRUSTED_JUDGEMENTS):
    return set(selectors.judgements_matching(judgement_filter=judgement_filter).values_list("id", flat=True))


def _flag(user, campaign):
    return AnnotatorFlag.objects.create(campaign=campaign, annotator=user, reason="test", gold_seen=5, gold_correct=1)


def _on_card_for(judgement, seconds, *, undone_seconds_before_vote=None):
    """Make ``judgement``'s card look shown ``seconds`` before the vote (or handed back by an undo)."""
    lease = Assignment.objects.filter(comparison_id=judgement.comparison_id, annotator=judgement.annotator)
    undone = None
    if undone_seconds_before_vote is not None:
        undone = judgement.created_at - timedelta(seconds=undone_seconds_before_vote)
    lease.update(created_at=judgement.created_at - timedelta(seconds=seconds), undone_at=undone)


def test_a_flagged_annotators_votes_are_left_out_by_default():
    campaign = CampaignFactory()
    trusted, flagged = UserFactory(), UserFactory()
    comparison = ComparisonFactory(campaign=campaign, target_judgements=2)
    kept, dropped = judge(trusted, comparison), judge(flagged, comparison)
    _flag(flagged, campaign)
    assert _kept() == {kept.id}
    assert dropped.id in _kept(JudgementFilter(include_flagged=True))


def test_a_flag_in_one_campaign_leaves_the_annotators_other_campaigns_alone():
    flagged_in, elsewhere, user = CampaignFactory(), CampaignFactory(), UserFactory()
    _flag(user, flagged_in)
    vote = judge(user, ComparisonFactory(campaign=elsewhere))
    assert _kept() == {vote.id}


def test_a_cleared_flag_lets_the_votes_back_in():
    campaign, user = CampaignFactory(), UserFactory()
    vote = judge(user, ComparisonFactory(campaign=campaign))
    _flag(user, campaign)
    AnnotatorFlag.objects.update(cleared_at=timezone.now())
    assert _kept() == {vote.id}


def test_gold_votes_are_never_kept_even_with_every_option():
    judge(UserFactory(), GoldComparisonFactory())
    every = JudgementFilter(include_flagged=True, include_evaluation=True)
    assert _kept(every) == set()


def test_a_vote_faster_than_the_campaigns_threshold_is_left_out_when_rushed_are_excluded():
    campaign = CampaignFactory(rushed_seconds=5)
    comparison = ComparisonFactory(campaign=campaign, target_judgements=2)
    rushed, careful = judge(UserFactory(), comparison), judge(UserFactory(), comparison)
    _on_card_for(rushed, 2)
    _on_card_for(careful, 8)
    assert _kept(JudgementFilter(exclude_rushed=True)) == {careful.id}
    assert _kept() == {rushed.id, careful.id}


def test_the_threshold_is_each_votes_own_campaigns():
    patient, hasty = CampaignFactory(rushed_seconds=30), CampaignFactory(rushed_seconds=1)
    slow_enough = judge(UserFactory(), ComparisonFactory(campaign=hasty))
    too_fast = judge(UserFactory(), ComparisonFactory(campaign=patient))
    _on_card_for(slow_enough, 10)
    _on_card_for(too_fast, 10)
    assert _kept(JudgementFilter(exclude_rushed=True)) == {slow_enough.id}


def test_time_on_card_after_an_undo_runs_from_the_undo():
    campaign = CampaignFactory(rushed_seconds=5)
    vote = judge(UserFactory(), ComparisonFactory(campaign=campaign))
    _on_card_for(vote, 60, undone_seconds_before_vote=1)
    assert _kept(JudgementFilter(exclude_rushed=True)) == set()


def test_an_imported_judgement_has_no_card_and_is_never_rushed(write_jsonl):
    import_pairs(write_jsonl(PAIRS[:1]), judged=True)
    assert len(_kept(JudgementFilter(exclude_rushed=True))) == 1


def test_the_campaign_filter_keeps_one_campaigns_votes():
    mine, other = CampaignFactory(), CampaignFactory()
    vote = judge(UserFactory(), ComparisonFactory(campaign=mine))
    judge(UserFactory(), ComparisonFactory(campaign=other))
    assert _kept(JudgementFilter(campaign=mine.slug)) == {vote.id}


def test_an_export_row_names_its_campaign(tmp_path):
    campaign = CampaignFactory(slug="helpful")
    judge(UserFactory(), ComparisonFactory(campaign=campaign))
    path = tmp_path / "out.jsonl"
    services.export_preferences(path=path, fmt="jsonl")
    (row,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert row["campaign"] == "helpful"


def test_the_default_export_leaves_out_a_flagged_annotators_rows(tmp_path):
    campaign, user = CampaignFactory(), UserFactory()
    judge(user, ComparisonFactory(campaign=campaign))
    _flag(user, campaign)
    path = tmp_path / "out.jsonl"
    assert services.export_preferences(path=path, fmt="jsonl").rows == 0
    everyone = JudgementFilter(include_flagged=True)
    assert services.export_preferences(path=path, fmt="jsonl", judgement_filter=everyone).rows == 1
