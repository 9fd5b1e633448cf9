"""Recording a person's judgement exactly once, and taking the latest one back.

Both versions of the vote's write live here side by side, behind ``vote_insert``: one
PostgreSQL statement, and its portable ORM twin for other databases.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotate.limits import REASON_MAX_CHARS
from annotate.models import Assignment, Comparison, Judgement
from annotate.services import _shared


class JudgementConflict(Exception):
    """The annotator judged this comparison already, or it has all the judgements it wants."""


class JudgementInvalid(ValueError):
    pass


def _judgement_check(*, choice: str, strength: str, reason: str) -> None:
    if choice not in Judgement.Choice.values:
        raise JudgementInvalid(f"choice must be one of {', '.join(Judgement.Choice.values)}")
    if strength and strength not in Judgement.Strength.values:
        raise JudgementInvalid(f"strength must be one of {', '.join(Judgement.Strength.values)}")
    if strength and choice not in (Judgement.Choice.LEFT, Judgement.Choice.RIGHT):
        raise JudgementInvalid("strength only applies when one side is better")
    if len(reason) > REASON_MAX_CHARS:
        raise JudgementInvalid(f"reason is longer than {REASON_MAX_CHARS} characters")


def judgement_record(
    *,
    annotator: User,
    comparison_id: int,
    left_id: int,
    right_id: int,
    choice: str,
    strength: str = "",
    reason: str = "",
) -> Judgement:
    """Record one person's judgement, exactly once.

    Locks: the comparison row, through the conditional UPDATE that takes one of its slots; the
    unique (comparison, annotator) constraint turns a double submit into a conflict, and both
    happen in one transaction (one statement on PostgreSQL) so a refused judgement leaves the
    count as it was. Why a vote was refused is asked only after the refusal, so the usual vote
    costs no extra query.
    """
    reason = reason.strip()
    _judgement_check(choice=choice, strength=strength, reason=reason)
    judgement = Judgement(
        comparison_id=comparison_id,
        annotator=annotator,
        source="human",
        left_id=left_id,
        right_id=right_id,
        choice=choice,
        winner_id={Judgement.Choice.LEFT: left_id, Judgement.Choice.RIGHT: right_id}.get(Judgement.Choice(choice)),
        strength=strength,
        reason=reason,
        created_at=timezone.now(),
    )
    try:
        saved = vote_insert(judgement=judgement, annotator=annotator)
    except IntegrityError as exc:
        raise JudgementConflict("you have already judged this comparison") from exc
    if not saved:
        raise _judgement_refusal(annotator=annotator, comparison_id=comparison_id, left_id=left_id, right_id=right_id)
    return judgement


def _judgement_refusal(*, annotator: User, comparison_id: int, left_id: int, right_id: int) -> Exception:
    """Why no slot was free for this vote: a bad comparison or pair, a second vote, or a full comparison."""
    pair = Comparison.objects.filter(id=comparison_id).values_list("completion_a_id", "completion_b_id").first()
    if pair is None:
        return JudgementInvalid(f"comparison {comparison_id} does not exist")
    if {left_id, right_id} != set(pair):
        return JudgementInvalid(f"left and right must be the two completions of comparison {comparison_id}")
    if Judgement.objects.filter(comparison_id=comparison_id, annotator=annotator).exists():
        return JudgementConflict("you have already judged this comparison")
    return JudgementConflict("this comparison has all the judgements it needs")


def vote_insert(*, judgement: Judgement, annotator: User) -> bool:
    """Take a slot of the comparison (if these are its two completions), save the vote, close the lease.

    False, with nothing written, when no slot was free; an ``IntegrityError`` when the annotator
    has judged this comparison already. One SQL statement on PostgreSQL, an ORM transaction
    elsewhere; either way the slot, the vote and the lease change together or not at all.
    """
    if _shared.single_statement():
        return _vote_insert_statement(judgement, annotator)
    return _vote_insert_orm(judgement, annotator)


def _vote_insert_orm(judgement: Judgement, annotator: User) -> bool:
    left, right = judgement.left_id, judgement.right_id
    now = judgement.created_at
    with transaction.atomic():
        if not _shared.comparison_slot_take(judgement.comparison_id, (left, right)):
            return False
        judgement.save(force_insert=True)
        lease = Assignment.objects.filter(comparison_id=judgement.comparison_id, annotator=annotator)
        if not lease.update(judged_at=now, skipped_at=None):
            Assignment.objects.create(
                comparison_id=judgement.comparison_id,
                annotator=annotator,
                left_id=left,
                right_id=right,
                expires_at=now,
                judged_at=now,
            )
    return True


@functools.cache
def _vote_insert_sql() -> str:
    """``_vote_insert_orm`` as one PostgreSQL statement; it returns the new judgement's id, or no row.

    Parameters: the ``Judgement`` columns by name, and ``now``.
    """
    q = connection.ops.quote_name
    comparison, judgement = q(Comparison._meta.db_table), q(Judgement._meta.db_table)
    assignment = q(Assignment._meta.db_table)
    return f"""
        WITH slot AS (
          UPDATE {comparison} c SET judgement_count = c.judgement_count + 1
          WHERE c.id = %(comparison_id)s AND c.judgement_count < c.target_judgements
            AND ((c.completion_a_id = %(left_id)s AND c.completion_b_id = %(right_id)s)
                 OR (c.completion_a_id = %(right_id)s AND c.completion_b_id = %(left_id)s))
          RETURNING c.id
        ), vote AS (
          INSERT INTO {judgement}
            (comparison_id, annotator_id, source, left_id, right_id, choice, winner_id, strength, reason, created_at)
          SELECT slot.id, %(annotator_id)s, %(source)s, %(left_id)s, %(right_id)s, %(choice)s, %(winner_id)s,
                 %(strength)s, %(reason)s, %(now)s
          FROM slot
          RETURNING id
        ), lease AS (
          INSERT INTO {assignment}
            (comparison_id, annotator_id, left_id, right_id, created_at, expires_at, judged_at, skipped_at)
          SELECT slot.id, %(annotator_id)s, %(left_id)s, %(right_id)s, %(now)s, %(now)s, %(now)s, NULL FROM slot
          ON CONFLICT (comparison_id, annotator_id) DO UPDATE SET judged_at = EXCLUDED.judged_at, skipped_at = NULL
        )
        SELECT id FROM vote"""  # noqa: S608


def _vote_insert_statement(judgement: Judgement, annotator: User) -> bool:
    params: dict[str, Any] = {
        "comparison_id": judgement.comparison_id,
        "annotator_id": annotator.pk,
        "source": judgement.source,
        "left_id": judgement.left_id,
        "right_id": judgement.right_id,
        "choice": judgement.choice,
        "winner_id": judgement.winner_id,
        "strength": judgement.strength,
        "reason": judgement.reason,
        "now": judgement.created_at,
    }
    with _shared.statement_guard(), connection.cursor() as cursor:
        cursor.execute(_vote_insert_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return False
    # The instance now stands for the saved row, as ``save()`` would have left it.
    judgement.pk = row[0]
    judgement._state.adding = False
    judgement._state.db = connection.alias
    return True


def judgement_undo_last(*, annotator: User) -> Judgement | None:
    """Take back this annotator's latest judgement; its comparison comes back to them first.

    Locks the judgement's row so that two undos at once remove it, and free its slot, once.
    """
    now = timezone.now()
    with transaction.atomic():
        last = Judgement.objects.select_for_update().filter(annotator=annotator).order_by("-id").first()
        if last is None:
            return None
        last.delete()
        Comparison.objects.filter(id=last.comparison_id, judgement_count__gt=0).update(
            judgement_count=F("judgement_count") - 1
        )
        Assignment.objects.filter(comparison_id=last.comparison_id, annotator=annotator).update(
            judged_at=None, skipped_at=None, expires_at=now + timedelta(seconds=settings.DUET_LEASE_SECONDS)
        )
    return last
