"""campaign_stats and campaign_throughput: one campaign's alpha, annotator table and judgements over time."""

from datetime import timedelta

import krippendorff
import numpy as np
import pytest
from django.utils import timezone

from annotate import agreement, selectors
from annotate.models import AnnotatorFlag
from tests.annotate.factories import CampaignFactory, ComparisonFactory, GoldComparisonFactory, UserFactory
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.django_db

# Three annotators over five comparisons: (choice, strength) with left = completion a.
VOTES = {
    "ann": [("left", "much"), ("left", "clearly"), ("right", "slightly"), ("tie", ""), ("left", "much")],
    "bob": [("left", "clearly"), ("right", "clearly"), ("right", "much"), ("tie", ""), ("both_bad", "")],
    "cy": [("left", "much"), ("left", "slightly"), ("tie", ""), ("left", "clearly"), ("left", "much")],
}


def _campaign_with_votes(**campaign_values):
    campaign = CampaignFactory(**campaign_values)
    comparisons = ComparisonFactory.create_batch(5, campaign=campaign, target_judgements=3)
    for name, votes in VOTES.items():
        user = UserFactory(username=name)
        for comparison, (choice, strength) in zip(comparisons, votes, strict=True):
            judge(user, comparison, choice, strength=strength)
    return campaign


def _nominal(choice):
    return {"left": "a", "right": "b"}.get(choice, choice)


def _ordinal(choice, strength):
    step = agreement.STRENGTH_STEPS.get(strength)
    if choice == "tie":
        return 0
    if choice == "both_bad" or step is None:
        return None
    return step if choice == "left" else -step


def test_alpha_equals_the_agreement_module_and_the_krippendorff_package_on_fixed_data():
    stats = selectors.campaign_stats(campaign=_campaign_with_votes())
    units = [[_nominal(votes[i][0]) for votes in VOTES.values()] for i in range(5)]
    ordinal_units = [[_ordinal(*votes[i]) for votes in VOTES.values()] for i in range(5)]
    expected_nominal = agreement.alpha(agreement.value_counts(units, level="nominal"), level="nominal")
    expected_ordinal = agreement.alpha(agreement.value_counts(ordinal_units, level="ordinal"), level="ordinal")
    index = {value: i for i, value in enumerate(agreement.NOMINAL_VALUES)}
    coded = np.array([[index[_nominal(choice)] for choice, _ in votes] for votes in VOTES.values()], dtype=float)
    package = krippendorff.alpha(reliability_data=coded, level_of_measurement="nominal", value_domain=[0, 1, 2, 3])
    assert stats.alpha.nominal == pytest.approx(expected_nominal, abs=1e-9)
    assert stats.alpha.nominal == pytest.approx(package, abs=1e-9)
    assert stats.alpha.ordinal == pytest.approx(expected_ordinal, abs=1e-9)
    assert stats.alpha.nominal_interval is not None


def test_another_campaigns_judgements_do_not_count():
    _campaign_with_votes()
    other = CampaignFactory()
    assert selectors.campaign_stats(campaign=other).annotators == []


def test_gold_accuracy_with_its_interval_and_gold_seen():
    campaign = CampaignFactory()
    ann = UserFactory(username="ann")
    for choice in ("left", "left", "left", "right"):  # gold says completion a: three right, one wrong
        judge(ann, GoldComparisonFactory(campaign=campaign), choice)
    (row,) = selectors.campaign_stats(campaign=campaign).annotators
    assert (row.username, row.judgements, row.gold_seen, row.gold_accuracy) == ("ann", 0, 4, 0.75)
    assert row.gold_interval == agreement.wilson_interval(3, 4)


def test_rushed_counts_votes_faster_than_the_campaigns_threshold_not_the_sites(settings):
    settings.DUET_RUSHED_SECONDS = 0
    stats = selectors.campaign_stats(campaign=_campaign_with_votes(rushed_seconds=5))
    # A scripted vote is cast the moment its card is leased: every one is rushed at 5 s, none at 0 s.
    assert {row.username: row.rushed for row in stats.annotators} == {"ann": 5, "bob": 5, "cy": 5}


def test_a_flagged_annotator_is_shown_and_still_counted():
    campaign = _campaign_with_votes()
    bob = UserFactory(username="bob")
    AnnotatorFlag.objects.create(campaign=campaign, annotator=bob, reason="gold 1/5", gold_seen=5, gold_correct=1)
    rows = {row.username: row for row in selectors.campaign_stats(campaign=campaign).annotators}
    assert (rows["bob"].flagged, rows["bob"].judgements, rows["ann"].flagged) == (True, 5, False)


def test_a_cleared_flag_is_not_shown():
    campaign = _campaign_with_votes()
    AnnotatorFlag.objects.create(
        campaign=campaign, annotator=UserFactory(username="bob"), reason="x", gold_seen=5, gold_correct=1,
        cleared_at=timezone.now(),
    )
    rows = {row.username: row for row in selectors.campaign_stats(campaign=campaign).annotators}
    assert rows["bob"].flagged is False


def test_the_table_sorts_by_a_column_blanks_last():
    campaign = _campaign_with_votes()
    judge(UserFactory(username="dee"), GoldComparisonFactory(campaign=campaign), "left")
    rows = selectors.campaign_stats(campaign=campaign, sort="-gold_accuracy").annotators
    assert [row.username for row in rows] == ["dee", "ann", "bob", "cy"]


def test_csv_rows_line_up_with_the_header():
    stats = selectors.campaign_stats(campaign=_campaign_with_votes())
    assert all(len(row.csv_row()) == len(selectors.CAMPAIGN_CSV_HEADER) for row in stats.annotators)


def test_throughput_counts_per_hour_with_empty_hours_in_between(monkeypatch):
    start = timezone.now().replace(minute=10, second=0, microsecond=0)
    campaign = CampaignFactory()
    comparisons = ComparisonFactory.create_batch(3, campaign=campaign)
    for offset, comparison in zip((0, 0, 3), comparisons, strict=True):
        monkeypatch.setattr(timezone, "now", lambda offset=offset: start + timedelta(hours=offset))
        judge(UserFactory(), comparison)
    throughput = selectors.campaign_throughput(campaign=campaign)
    assert throughput.unit == "hour"
    assert [count for _, count in throughput.points] == [2, 0, 0, 1]


def test_throughput_over_a_week_is_per_day(monkeypatch):
    start = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    campaign = CampaignFactory()
    for offset, comparison in zip((0, 6), ComparisonFactory.create_batch(2, campaign=campaign), strict=True):
        monkeypatch.setattr(timezone, "now", lambda offset=offset: start + timedelta(days=offset))
        judge(UserFactory(), comparison)
    throughput = selectors.campaign_throughput(campaign=campaign)
    assert (throughput.unit, throughput.total, len(throughput.points)) == ("day", 2, 7)


def test_throughput_of_an_untouched_campaign_is_empty():
    assert selectors.campaign_throughput(campaign=CampaignFactory()).points == []
