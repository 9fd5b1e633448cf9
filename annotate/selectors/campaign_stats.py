"""One campaign's statistics: alpha with its interval, each annotator's figures and gold accuracy, throughput."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count
from django.db.models.functions import TruncDay, TruncHour

from annotate.agreement import DEFAULT_SORT, Alpha, AnnotatorReliability, annotators_sorted
from annotate.filters import EVERY_JUDGEMENT
from annotate.models import Campaign, Judgement
from annotate.selectors.gold import GoldScore, flagged_annotator_ids, gold_scores
from annotate.selectors.stats import annotator_reliability


@dataclass(frozen=True)
class CampaignAnnotator:
    """One annotator's figures in one campaign; gold figures are since their last unflagging."""

    username: str
    judgements: int
    agreement: float | None
    kappa: float | None
    gold_accuracy: float | None
    gold_interval: tuple[float, float] | None
    gold_seen: int
    left_share: float | None
    left_share_interval: tuple[float, float] | None
    median_seconds: float | None
    rushed: int
    flagged: bool

    def csv_row(self) -> list[object]:
        gold_low, gold_high = self.gold_interval or (None, None)
        left_low, left_high = self.left_share_interval or (None, None)
        return [
            self.username,
            self.judgements,
            self.agreement,
            self.kappa,
            self.gold_accuracy,
            gold_low,
            gold_high,
            self.gold_seen,
            self.left_share,
            left_low,
            left_high,
            self.median_seconds,
            self.rushed,
            self.flagged,
        ]


CAMPAIGN_CSV_HEADER = [
    "username",
    "judgements",
    "agreement",
    "kappa",
    "gold_accuracy",
    "gold_low",
    "gold_high",
    "gold_seen",
    "left_share",
    "left_share_low",
    "left_share_high",
    "median_seconds",
    "rushed",
    "flagged",
]
CAMPAIGN_SORT_COLUMNS = (
    "username",
    "judgements",
    "agreement",
    "kappa",
    "gold_accuracy",
    "gold_seen",
    "left_share",
    "median_seconds",
    "rushed",
    "flagged",
)
CAMPAIGN_DEFAULT_SORT = DEFAULT_SORT


@dataclass(frozen=True)
class CampaignStats:
    campaign: Campaign
    alpha: Alpha
    annotators: list[CampaignAnnotator]


def campaign_stats(*, campaign: Campaign, sort: str = CAMPAIGN_DEFAULT_SORT) -> CampaignStats:
    """Alpha and the annotator table of ``campaign``, flagged annotators included (stats are about people).

    Agreement, kappa, position bias and time come from the campaign's non-gold judgements
    (``annotator_reliability``, rushed by the campaign's threshold); gold accuracy from its gold items.
    Someone who has answered only gold items still has a row.
    """
    reliability = annotator_reliability(
        judgement_filter=replace(EVERY_JUDGEMENT, campaign=campaign.slug), rushed_seconds=campaign.rushed_seconds
    )
    gold = gold_scores(campaign=campaign)
    flagged = flagged_annotator_ids(campaign=campaign)
    usernames = dict(get_user_model().objects.filter(pk__in=gold.keys() | flagged).values_list("pk", "username"))
    gold_by_name = {usernames[pk]: score for pk, score in gold.items()}
    flagged_names = {usernames[pk] for pk in flagged}
    people = {row.username: row for row in reliability.annotators}
    rows = [
        _annotator(name, people.get(name), gold_by_name.get(name), name in flagged_names)
        for name in people.keys() | gold_by_name.keys() | flagged_names
    ]
    annotators = annotators_sorted(rows, sort, columns=CAMPAIGN_SORT_COLUMNS)
    return CampaignStats(campaign=campaign, alpha=reliability.alpha, annotators=annotators)


def _annotator(
    username: str, row: AnnotatorReliability | None, gold: GoldScore | None, flagged: bool
) -> CampaignAnnotator:
    return CampaignAnnotator(
        username=username,
        judgements=row.judgements if row else 0,
        agreement=row.agreement if row else None,
        kappa=row.kappa if row else None,
        gold_accuracy=gold.accuracy if gold else None,
        gold_interval=gold.interval if gold else None,
        gold_seen=gold.seen if gold else 0,
        left_share=row.left_share if row else None,
        left_share_interval=row.left_share_interval if row else None,
        median_seconds=row.median_seconds if row else None,
        rushed=row.rushed if row else 0,
        flagged=flagged,
    )


# Throughput ----------------------------------------------------------------------------------

# Up to three days of work reads best hour by hour; longer, day by day (a year is 365 bars at most).
HOURLY_SPAN = timedelta(days=3)


@dataclass(frozen=True)
class Throughput:
    """People's judgements in a campaign per ``unit`` ("hour" or "day"), every bucket from first to last."""

    unit: str
    points: list[tuple[datetime, int]]

    @property
    def total(self) -> int:
        return sum(count for _, count in self.points)


def campaign_throughput(*, campaign: Campaign) -> Throughput:
    """How many judgements people gave the campaign (gold items too: it is work done) per hour or per day.

    Buckets without a judgement are there with zero, so a plot shows the pauses.
    """
    judgements = Judgement.objects.filter(comparison__campaign=campaign, annotator__isnull=False)
    span = judgements.order_by("created_at").values_list("created_at", flat=True)
    first, last = span.first(), span.last()
    if first is None or last is None:
        return Throughput(unit="hour", points=[])
    hourly = last - first <= HOURLY_SPAN
    trunc, step = (TruncHour, timedelta(hours=1)) if hourly else (TruncDay, timedelta(days=1))
    per_bucket = judgements.annotate(bucket=trunc("created_at")).values("bucket").annotate(n=Count("id"))
    counts = dict(per_bucket.values_list("bucket", "n"))
    points: list[tuple[datetime, int]] = []
    bucket = min(counts)
    while bucket <= max(counts):
        points.append((bucket, counts.get(bucket, 0)))
        bucket += step
    return Throughput(unit="hour" if hourly else "day", points=points)

