"""Staff statistics: counts, pairwise agreement, Krippendorff's alpha and each annotator's reliability."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, F, Q
from django.utils import timezone

from annotate.agreement import (
    DEFAULT_SORT,
    Reliability,
    ReliabilityTally,
    vote_of,
)
from annotate.filters import EVERY_JUDGEMENT, JudgementFilter
from annotate.models import (
    Campaign,
    Comparison,
    Completion,
    Judgement,
    Prompt,
)
from annotate.selectors.decisions import JUDGEMENT_ROWS_PER_FETCH, judgements_matching
from annotate.selectors.timing import lease_times

# Staff statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorStats:
    username: str
    judgements: int
    today: int
    agreement: float | None
    agreement_pairs: int


@dataclass(frozen=True)
class AnnotationStats:
    prompts: int
    completions: int
    comparisons: int
    comparisons_open: int
    judgements_human: int
    judgements_imported: int
    choices: dict[str, int]
    agreement: float | None
    agreement_pairs: int
    annotators: list[AnnotatorStats]


def annotation_stats() -> AnnotationStats:
    """Counts, and pairwise agreement: how often two judgements of one comparison pick the same outcome.

    The outcome is the winning completion, or "tie" / "both bad"; only comparisons with two
    judgements or more count. An annotator's agreement is over the pairs they are part of
    (imported judgements count as the other side of a pair). One streamed pass over those
    judgements, so memory stays flat.
    """
    start_of_day = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    per_user = (
        Judgement.objects.filter(annotator__isnull=False)
        .values("annotator_id", "annotator__username")
        .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=start_of_day)))
        .order_by("-total", "annotator__username")
    )
    rows = (
        Judgement.objects.filter(comparison__judgement_count__gte=2)
        .order_by("comparison_id", "id")
        .values_list("comparison_id", "annotator_id", "choice", "winner_id")
        .iterator(chunk_size=JUDGEMENT_ROWS_PER_FETCH)
    )
    agree: Counter[int | None] = Counter()
    pairs: Counter[int | None] = Counter()
    total_agree = total_pairs = 0
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        votes = [(annotator_id, winner if winner is not None else choice) for _, annotator_id, choice, winner in group]
        for i, (who_a, outcome_a) in enumerate(votes):
            for who_b, outcome_b in votes[i + 1 :]:
                same = int(outcome_a == outcome_b)
                total_pairs += 1
                total_agree += same
                for who in (who_a, who_b):
                    pairs[who] += 1
                    agree[who] += same
    annotators = [
        AnnotatorStats(
            username=row["annotator__username"],
            judgements=row["total"],
            today=row["today"],
            agreement=agree[row["annotator_id"]] / pairs[row["annotator_id"]] if pairs[row["annotator_id"]] else None,
            agreement_pairs=pairs[row["annotator_id"]],
        )
        for row in per_user
    ]
    choices = dict(Judgement.objects.values_list("choice").annotate(n=Count("id")).order_by("choice"))
    return AnnotationStats(
        prompts=Prompt.objects.count(),
        completions=Completion.objects.count(),
        comparisons=Comparison.objects.count(),
        comparisons_open=Comparison.objects.filter(judgement_count__lt=F("target_judgements")).count(),
        judgements_human=Judgement.objects.filter(annotator__isnull=False).count(),
        judgements_imported=Judgement.objects.filter(annotator__isnull=True).count(),
        choices={label: choices.get(value, 0) for value, label in Judgement.Choice.choices},
        agreement=total_agree / total_pairs if total_pairs else None,
        agreement_pairs=total_pairs,
        annotators=annotators,
    )



# Agreement and annotator reliability -------------------------------------------------------


def annotator_reliability(
    *,
    judgement_filter: JudgementFilter = EVERY_JUDGEMENT,
    sort: str = DEFAULT_SORT,
    rushed_seconds: float | None = None,
) -> Reliability:
    """Krippendorff's alpha over the people's judgements ``judgement_filter`` keeps, and each person's figures.

    A judgement's time on its card runs from the lease (the assignment's creation, or the undo that
    handed the card back) to the vote, both on the server's clock. A vote faster than
    ``rushed_seconds`` counts as rushed; without it, the threshold of the filter's campaign
    (``rushed_seconds_of``). One streamed query, grouped
    by comparison; the formulas are ``annotate.agreement``'s.
    """
    times = lease_times()
    rows = (
        judgements_matching(judgement_filter=judgement_filter)
        .filter(annotator__isnull=False)
        .annotate(leased_at=times["leased_at"], undone_at=times["undone_at"])
        .order_by("comparison_id", "id")
        .values_list(
            "comparison_id",
            "annotator__username",
            "choice",
            "strength",
            "winner_id",
            "comparison__completion_a_id",
            "created_at",
            "leased_at",
            "undone_at",
        )
        .iterator(chunk_size=JUDGEMENT_ROWS_PER_FETCH)
    )
    tally = ReliabilityTally()
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        tally.add([vote_of(*row[1:]) for row in group])
    threshold = rushed_seconds_of(judgement_filter) if rushed_seconds is None else rushed_seconds
    return tally.result(rushed_seconds=threshold, sort=sort)


def rushed_seconds_of(judgement_filter: JudgementFilter) -> float:
    """The rushed threshold of the filter's campaign, or the site's default when it names none (or an unknown one)."""
    if judgement_filter.campaign is not None:
        seconds = Campaign.objects.filter(slug=judgement_filter.campaign).values_list("rushed_seconds", flat=True)
        found = seconds.first()
        if found is not None:
            return found
    return settings.DUET_RUSHED_SECONDS
