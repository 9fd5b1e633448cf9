"""What an annotator has done and has left, and the prompts a tag selects."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import F, Sum
from django.utils import timezone

from annotate.models import (
    Assignment,
    Campaign,
    Comparison,
    Judgement,
    Prompt,
)


@dataclass(frozen=True)
class Progress:
    judged_today: int
    judged_total: int
    remaining: int


def annotator_progress(*, annotator: User, campaign: Campaign | None = None) -> Progress:
    """What the annotator has done, and how many judgements the open comparisons still want.

    Within ``campaign`` when one is given, else over every campaign. ``remaining`` counts open
    slots over ordinary comparisons this annotator has not seen: an upper bound on what is left
    for them, since others may take some of those slots first. Gold items are left out: each
    wants a judgement from everyone, and they are served only beside ordinary cards.
    """
    start_of_day = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    scope = {} if campaign is None else {"comparison__campaign": campaign}
    mine = Judgement.objects.filter(annotator=annotator, **scope)
    seen = Assignment.objects.filter(annotator=annotator).values("comparison_id")
    ordinary = Comparison.objects.filter(judgement_count__lt=F("target_judgements"), gold_outcome="")
    if campaign is not None:
        ordinary = ordinary.filter(campaign=campaign)
    remaining = ordinary.exclude(id__in=seen).aggregate(n=Sum(F("target_judgements") - F("judgement_count")))["n"]
    open_own = Assignment.objects.filter(
        annotator=annotator, judged_at__isnull=True, skipped_at__isnull=True, **scope
    ).count()
    return Progress(
        judged_today=mine.filter(created_at__gte=start_of_day).count(),
        judged_total=mine.count(),
        remaining=min(remaining or 0, 1_000_000) + open_own,
    )


def last_judgement(*, annotator: User, campaign: Campaign | None = None) -> Judgement | None:
    """The annotator's latest judgement, in ``campaign`` when one is given."""
    scope = {} if campaign is None else {"comparison__campaign": campaign}
    return Judgement.objects.filter(annotator=annotator, **scope).order_by("-id").first()


def prompts_tagged(*, tag: str, limit: int | None = None) -> list[Prompt]:
    """The prompts tagged ``tag``, oldest first, at most ``limit`` of them."""
    # JSON containment is not portable to SQLite, and tags are short lists: filter here.
    chosen = [p for p in Prompt.objects.order_by("id") if tag in (p.tags or [])]
    return chosen[:limit] if limit is not None else chosen
