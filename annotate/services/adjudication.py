"""Staff adjudication: a decided outcome for a comparison whose votes split, overriding their majority.

The outcome names a completion (A or B), not a side, since every annotator may have seen the pair
in a different order. Exports read it through ``annotate.selectors.decide``, and so does a
training run's frozen dataset. Only staff may adjudicate: the page and the API check that.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from annotate.limits import reason_problem
from annotate.models import AuditAction, Comparison, Outcome
from annotate.services.audit import audit_record
from annotate.services.gold import comparison_gold_mark


class AdjudicationInvalid(ValueError):
    """An outcome or note that cannot be recorded; nothing was changed."""


def comparison_adjudicate(
    *, comparison_id: int, outcome: str, by: User, note: str = "", gold: bool = False
) -> Comparison:
    """Record ``by``'s decision on a comparison, replacing any earlier one, with an audit line each time.

    With ``gold`` the decided outcome also becomes the comparison's expected gold outcome
    (``comparison_gold_mark``, its own audit line), in the same transaction.

    Takes the comparison's row lock, so two staff deciding at once leave the later decision and
    an audit line for each, in the order they were applied.
    """
    if outcome not in Outcome.values:
        raise AdjudicationInvalid(f"outcome must be one of {', '.join(Outcome.values)}, got {outcome!r}")
    # A note is held to a reason's rule: ADJUDICATION_NOTE_MAX_CHARS is REASON_MAX_CHARS.
    problem = reason_problem(note)
    if problem is not None:
        raise AdjudicationInvalid(f"the note {problem}")
    with transaction.atomic():
        comparison = Comparison.objects.select_for_update().get(pk=comparison_id)
        previous = comparison.adjudicated_outcome
        comparison.adjudicated_outcome = outcome
        comparison.adjudicated_by = by
        comparison.adjudicated_at = timezone.now()
        comparison.adjudication_note = note
        comparison.save(
            update_fields=["adjudicated_outcome", "adjudicated_by", "adjudicated_at", "adjudication_note"]
        )
        audit_record(
            action=AuditAction.ADJUDICATE,
            target=comparison,
            detail={"outcome": outcome, "previous": previous, "note": note},
        )
        if gold:
            comparison_gold_mark(comparison=comparison, outcome=outcome, actor=by)
    return comparison
