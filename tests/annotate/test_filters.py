from datetime import UTC, datetime, timedelta, timezone

import pytest

from annotate.filters import JudgementFilter, moment_check, names_parse


def test_names_parse_splits_on_commas_and_drops_blanks():
    assert names_parse(" ann, ,gold.jsonl ,") == ("ann", "gold.jsonl")


@pytest.mark.parametrize("agreement", [-0.1, 1.5])
def test_min_agreement_outside_zero_to_one_is_refused(agreement):
    with pytest.raises(ValueError, match="min_agreement must lie between 0 and 1"):
        JudgementFilter(min_agreement=agreement)


def test_from_inputs_leaves_out_each_name_as_annotator_and_as_source():
    judgement_filter = JudgementFilter.from_inputs(exclude=["ann, gold.jsonl", "ann"])
    assert judgement_filter.exclude_annotators == judgement_filter.exclude_sources == ("ann", "gold.jsonl")


def test_json_round_trips():
    judgement_filter = JudgementFilter(
        since=datetime(2026, 11, 1, tzinfo=UTC),
        exclude_annotators=("ann",),
        exclude_sources=("gold.jsonl",),
        min_agreement=0.75,
    )
    assert JudgementFilter.from_json(judgement_filter.to_json()) == judgement_filter


def test_json_stored_before_sources_had_their_own_field_leaves_the_names_out_as_both():
    stored = {"since": None, "min_agreement": 0.5, "exclude_annotators": ["bot"]}
    assert JudgementFilter.from_json(stored) == JudgementFilter(
        exclude_annotators=("bot",), exclude_sources=("bot",), min_agreement=0.5
    )


def test_evaluation_judgements_are_left_out_unless_asked_for():
    assert JudgementFilter().include_evaluation is False
    assert JudgementFilter.from_inputs(exclude="ann").include_evaluation is False


def test_json_round_trips_include_evaluation():
    judgement_filter = JudgementFilter(include_evaluation=True)
    assert JudgementFilter.from_json(judgement_filter.to_json()) == judgement_filter


def test_json_stored_before_evaluation_rounds_leaves_evaluation_judgements_out():
    stored = {"since": None, "min_agreement": 0.0, "exclude_annotators": [], "exclude_sources": []}
    assert JudgementFilter.from_json(stored).include_evaluation is False


def test_a_since_with_no_utc_time_is_refused():
    edge = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    with pytest.raises(ValueError, match="since 0001-01-01T00:00:00\\+14:00 lies outside"):
        JudgementFilter(since=edge)


def test_moment_check_lets_none_and_ordinary_moments_through():
    moment_check(None, field="since")
    moment_check(datetime(2026, 12, 2, tzinfo=UTC), field="since")


def test_json_round_trips_the_campaign_and_quality_options():
    judgement_filter = JudgementFilter(campaign="helpful", include_flagged=True, exclude_rushed=True)
    assert JudgementFilter.from_json(judgement_filter.to_json()) == judgement_filter


def test_json_stored_before_campaigns_covers_every_campaign_and_leaves_flagged_votes_out():
    stored = {"since": None, "min_agreement": 0.0, "exclude_annotators": [], "exclude_sources": []}
    assert JudgementFilter.from_json(stored) == JudgementFilter()
