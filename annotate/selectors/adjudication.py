"""Comparisons whose votes split, with every vote, for a staff decision."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count

from annotate.agreement import card_shown_at
from annotate.models import (
    Assignment,
    Comparison,
    Judgement,
    Outcome,
)
from annotate.selectors.decisions import JUDGEMENT_ROWS_PER_FETCH

# Adjudication -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitComparison:
    """A comparison whose judgements pick more than one outcome; ``agreement`` is the largest outcome's share."""

    comparison_id: int
    agreement: float
    num_judgements: int


def comparisons_split() -> list[SplitComparison]:
    """Comparisons judged twice or more without one outcome for all, lowest agreement first (then oldest).

    An outcome is a completion, a tie or both bad, so two annotators who saw the pair in opposite
    side orders and chose the same completion agree. One streamed pass over the judgements of
    comparisons judged twice or more; memory holds one small record per split comparison. Gold
    items are left out: their answer is known, and the wrong votes on them measure annotators.
    """
    judged_twice = (
        Judgement.objects.filter(comparison__gold_outcome="")
        .values("comparison_id")
        .annotate(n=Count("id"))
        .filter(n__gte=2)
        .values("comparison_id")
    )
    rows = (
        Judgement.objects.filter(comparison_id__in=judged_twice)
        .order_by("comparison_id")
        .values_list("comparison_id", "choice", "winner_id")
        .iterator(chunk_size=JUDGEMENT_ROWS_PER_FETCH)
    )
    splits = []
    for comparison_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        tally = Counter(winner if winner is not None else choice for _, choice, winner in group)
        total = sum(tally.values())
        if len(tally) > 1:
            splits.append(SplitComparison(comparison_id, max(tally.values()) / total, total))
    return sorted(splits, key=lambda split: (split.agreement, split.comparison_id))


@dataclass(frozen=True)
class Vote:
    """One judgement as an adjudicator reads it: by whom, for which completion, and how long they looked."""

    judge: str
    outcome: str
    strength: str
    reason: str
    seconds_on_card: int | None
    created_at: datetime

    @property
    def outcome_label(self) -> str:
        return Outcome(self.outcome).label


@dataclass(frozen=True)
class SplitCase:
    comparison: Comparison
    agreement: float
    votes: list[Vote]


def split_cases(*, splits: Iterable[SplitComparison]) -> list[SplitCase]:
    """The comparisons of ``splits`` with their texts and every vote, in the same order (three queries).

    Time on card runs from the lease (or the undo that handed the card back: ``card_shown_at``) to
    the vote, read from the annotator's assignment; an imported judgement has none, and neither does
    a vote whose assignment is gone.
    """
    splits = list(splits)
    ids = [split.comparison_id for split in splits]
    comparisons = Comparison.objects.select_related(
        "prompt", "completion_a", "completion_b", "adjudicated_by"
    ).in_bulk(ids)
    leases: dict[tuple[int, int | None], Assignment] = {
        (a.comparison_id, a.annotator_id): a
        for a in Assignment.objects.filter(comparison_id__in=ids, judged_at__isnull=False)
    }
    votes: dict[int, list[Vote]] = {i: [] for i in ids}
    for judgement in Judgement.objects.filter(comparison_id__in=ids).select_related("annotator").order_by("id"):
        comparison = comparisons[judgement.comparison_id]
        lease = leases.get((judgement.comparison_id, judgement.annotator_id))
        votes[judgement.comparison_id].append(
            Vote(
                judge=judgement.annotator.username if judgement.annotator else judgement.source,
                outcome=_outcome(judgement, comparison),
                strength=judgement.get_strength_display() if judgement.strength else "",
                reason=judgement.reason,
                seconds_on_card=(
                    int((judgement.created_at - card_shown_at(lease.created_at, lease.undone_at)).total_seconds())
                    if lease
                    else None
                ),
                created_at=judgement.created_at,
            )
        )
    return [SplitCase(comparisons[s.comparison_id], s.agreement, votes[s.comparison_id]) for s in splits]


def _outcome(judgement: Judgement, comparison: Comparison) -> str:
    if judgement.winner_id == comparison.completion_a_id:
        return Outcome.A
    if judgement.winner_id == comparison.completion_b_id:
        return Outcome.B
    return judgement.choice
