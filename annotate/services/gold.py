"""Marking comparisons as gold: items whose expected outcome measures each annotator who answers them.

A gold item's k is ``GOLD_TARGET_JUDGEMENTS``, so it stays open to every annotator (the queue
serves it to each at most once); its judgements never reach an export or a training run
(``annotate.selectors.judgements_matching`` drops them).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth.models import User
from django.db import transaction

from annotate.limits import GOLD_TARGET_JUDGEMENTS
from annotate.models import AuditAction, Comparison, Outcome
from annotate.services._shared import BULK_CHUNK
from annotate.services.audit import audit_record


class GoldInvalid(ValueError):
    """An expected outcome that is not one of ``Outcome``'s; nothing was marked."""


def _outcome_check(outcome: str) -> None:
    if outcome not in Outcome.values:
        raise GoldInvalid(f"a gold outcome must be one of {', '.join(Outcome.values)}, got {outcome!r}")


def comparison_gold_mark(*, comparison: Comparison, outcome: str, actor: User | None = None) -> Comparison:
    """Make ``comparison`` a gold item expecting ``outcome`` (completion a or b, tie, both bad), with an audit line.

    Marking again replaces the expected outcome; the audit line keeps the previous one.
    """
    _outcome_check(outcome)
    with transaction.atomic():
        previous = Comparison.objects.select_for_update().filter(pk=comparison.pk).values_list(
            "gold_outcome", flat=True
        ).get()
        comparison.gold_outcome = outcome
        comparison.target_judgements = GOLD_TARGET_JUDGEMENTS
        comparison.save(update_fields=["gold_outcome", "target_judgements"])
        audit_record(
            action=AuditAction.GOLD_MARK,
            target=comparison,
            detail={
                "outcome": outcome,
                "previous": previous,
                "by": actor.get_username() if actor is not None else "",
            },
        )
    return comparison


def comparisons_gold_mark(*, outcomes: Mapping[int, str], source: str) -> int:
    """Mark many comparisons gold at once (``{comparison id: outcome}``), with one audit line naming ``source``.

    Every outcome is checked before anything is written; returns how many comparisons were marked.
    Runs inside the caller's transaction when there is one (an import), so it rolls back with it.
    """
    for outcome in outcomes.values():
        _outcome_check(outcome)
    by_outcome: dict[str, list[int]] = {}
    for comparison_id, outcome in outcomes.items():
        by_outcome.setdefault(outcome, []).append(comparison_id)
    marked = 0
    with transaction.atomic():
        for outcome, ids in by_outcome.items():
            for start in range(0, len(ids), BULK_CHUNK):
                marked += Comparison.objects.filter(id__in=ids[start : start + BULK_CHUNK]).update(
                    gold_outcome=outcome, target_judgements=GOLD_TARGET_JUDGEMENTS
                )
        if marked:
            counts = {outcome: len(ids) for outcome, ids in by_outcome.items()}
            audit_record(action=AuditAction.GOLD_MARK, detail={"source": source, "marked": marked, "outcomes": counts})
    return marked
