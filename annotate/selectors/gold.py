"""Gold items and what they say about each annotator: gold accuracy, and who is flagged."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import F, OuterRef, Q, Subquery

from annotate.agreement import nominal_value, wilson_interval
from annotate.models import AnnotatorFlag, Campaign, Judgement


@dataclass(frozen=True)
class GoldScore:
    """An annotator's answers to a campaign's gold items since their last unflagging."""

    seen: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.seen if self.seen else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.correct, self.seen)


def gold_judgements(*, campaign: Campaign) -> Q:
    """Judgements on the campaign's gold items: a filter on ``Judgement``."""
    return Q(comparison__campaign=campaign) & ~Q(comparison__gold_outcome="")


def gold_scores(*, campaign: Campaign, annotator_ids: list[int] | None = None) -> dict[int, GoldScore]:
    """``{annotator id: GoldScore}`` for everyone who answered a gold item of ``campaign``.

    Answers given before the annotator's latest unflagging do not count: clearing a flag is a fresh start.
    """
    cleared = (
        AnnotatorFlag.objects.filter(campaign=campaign, annotator=OuterRef("annotator"), cleared_at__isnull=False)
        .order_by("-cleared_at")
        .values("cleared_at")[:1]
    )
    rows = (
        Judgement.objects.filter(gold_judgements(campaign=campaign), annotator__isnull=False)
        .annotate(cleared_at=Subquery(cleared))
        .filter(Q(cleared_at__isnull=True) | Q(created_at__gt=F("cleared_at")))
    )
    if annotator_ids is not None:
        rows = rows.filter(annotator_id__in=annotator_ids)
    seen: dict[int, int] = {}
    correct: dict[int, int] = {}
    fields = ("annotator_id", "choice", "winner_id", "comparison__completion_a_id", "comparison__gold_outcome")
    for annotator_id, choice, winner_id, a_id, expected in rows.values_list(*fields):
        seen[annotator_id] = seen.get(annotator_id, 0) + 1
        answered = nominal_value(choice=choice, winner_id=winner_id, completion_a_id=a_id)
        correct[annotator_id] = correct.get(annotator_id, 0) + (answered == expected)
    return {pk: GoldScore(seen=n, correct=correct[pk]) for pk, n in seen.items()}


def flagged_annotator_ids(*, campaign: Campaign) -> set[int]:
    """Annotators with an open flag in ``campaign``."""
    return set(
        AnnotatorFlag.objects.filter(campaign=campaign, cleared_at__isnull=True).values_list("annotator_id", flat=True)
    )


def open_flag(*, campaign: Campaign, annotator_id: int) -> AnnotatorFlag | None:
    """The annotator's open flag in ``campaign``, or None."""
    return AnnotatorFlag.objects.filter(campaign=campaign, annotator_id=annotator_id, cleared_at__isnull=True).first()


def open_flags(*, campaign: Campaign | None = None) -> list[AnnotatorFlag]:
    """Open flags, oldest first, with their campaign and annotator loaded; of one campaign, or of all."""
    flags = AnnotatorFlag.objects.filter(cleared_at__isnull=True).select_related("campaign", "annotator")
    if campaign is not None:
        flags = flags.filter(campaign=campaign)
    return list(flags.order_by("flagged_at", "id"))


def open_flag_named(*, campaign_slug: str, username: str) -> AnnotatorFlag | None:
    """The open flag of the annotator called ``username`` in the campaign ``campaign_slug``, or None."""
    return (
        AnnotatorFlag.objects.filter(
            campaign__slug=campaign_slug, annotator__username=username, cleared_at__isnull=True
        )
        .select_related("campaign", "annotator")
        .first()
    )
