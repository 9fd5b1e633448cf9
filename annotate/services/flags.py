"""Flagging annotators whose gold accuracy falls below their campaign's threshold, and staff clearing a flag.

While a flag is open the annotator's judgements in that campaign stay out of exports and training
runs by default (``annotate.selectors.judgements_matching``); clearing it is a fresh start, since
``annotate.selectors.gold_scores`` counts only gold answers given after the latest unflagging.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.limits import reason_problem
from annotate.models import AnnotatorFlag, AuditAction, Campaign
from annotate.selectors.gold import GoldScore, gold_scores, open_flag
from annotate.services.audit import audit_record


class FlagNotOpen(ValueError):
    """The flag was cleared already; nothing was changed."""


class FlagInvalid(ValueError):
    """A note that cannot be stored; nothing was changed."""


def flag_reason(*, score: GoldScore, threshold: float) -> str:
    """Why an annotator is flagged, in words.

    "gold accuracy 4/10 = 40% (95% CI 17\u201369%) below 70% after 10 gold items", with an en dash.
    """
    low, high = score.interval or (0.0, 1.0)
    return (
        f"gold accuracy {score.correct}/{score.seen} = {score.accuracy or 0.0:.0%} "
        f"(95% CI {low * 100:.0f}\u2013{high * 100:.0f}%) below {threshold:.0%} after {score.seen} gold items"
    )


def annotator_flag_check(*, campaign: Campaign, annotator: User) -> AnnotatorFlag | None:
    """Flag ``annotator`` in ``campaign`` when their gold accuracy has fallen below the threshold; the new flag or None.

    Called after each of their votes on a gold item. The threshold applies once they have answered
    ``campaign.gold_min`` gold items (since their last unflagging); an annotator already flagged is
    left as they are. Two votes checked at once create one flag: the open-flag constraint refuses
    the second, which is then no flag of this call's making.
    """
    score = gold_scores(campaign=campaign, annotator_ids=[annotator.pk]).get(annotator.pk)
    if score is None or score.seen < campaign.gold_min or (score.accuracy or 0.0) >= campaign.gold_threshold:
        return None
    if open_flag(campaign=campaign, annotator_id=annotator.pk) is not None:
        return None
    try:
        with transaction.atomic():
            return AnnotatorFlag.objects.create(
                campaign=campaign,
                annotator=annotator,
                reason=flag_reason(score=score, threshold=campaign.gold_threshold),
                gold_seen=score.seen,
                gold_correct=score.correct,
            )
    except IntegrityError:
        return None


def annotator_unflag(*, flag: AnnotatorFlag, actor: User, note: str = "") -> AnnotatorFlag:
    """Clear an open flag (a staff action: the caller checks staff), with an audit line; ``FlagNotOpen`` if cleared.

    Locks the flag's row, so that two staff clearing it at once clear it once and the second is told.
    """
    note = note.strip()
    problem = reason_problem(note)
    if problem is not None:
        raise FlagInvalid(f"the note {problem}")
    with transaction.atomic():
        locked = AnnotatorFlag.objects.select_for_update().select_related("campaign", "annotator").get(pk=flag.pk)
        if locked.cleared_at is not None:
            raise FlagNotOpen(f"flag {flag.pk} was cleared at {locked.cleared_at:%Y-%m-%d %H:%M} UTC")
        locked.cleared_at = timezone.now()
        locked.cleared_by = actor
        locked.save(update_fields=["cleared_at", "cleared_by"])
        audit_record(
            action=AuditAction.UNFLAG,
            target=locked,
            detail={
                "campaign": locked.campaign.slug,
                "annotator": locked.annotator.get_username(),
                "reason": locked.reason,
                "note": note,
                "by": actor.get_username(),
            },
        )
    return locked
