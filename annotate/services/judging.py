"""Recording a person's judgement exactly once, for what they were shown, and taking the latest one back.

Both versions of the vote's write live here side by side, behind ``vote_insert``: one
PostgreSQL statement, and its portable ORM twin for other databases.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotate.limits import reason_problem
from annotate.models import Assignment, Campaign, Comparison, Judgement
from annotate.services import _shared, queue
from annotate.services.flags import annotator_flag_check


@dataclass(frozen=True)
class VoteSaved:
    """A saved vote: whether its comparison was a gold item (which may flag the voter)."""

    gold: bool


class JudgementConflict(Exception):
    """The vote is not for the lease the annotator holds, or it came too late; or an undo is not allowed."""


class JudgementInvalid(ValueError):
    pass


def _judgement_check(*, choice: str, strength: str, reason: str) -> None:
    if choice not in Judgement.Choice.values:
        raise JudgementInvalid(f"choice must be one of {', '.join(Judgement.Choice.values)}")
    if strength and strength not in Judgement.Strength.values:
        raise JudgementInvalid(f"strength must be one of {', '.join(Judgement.Strength.values)}")
    if strength and choice not in (Judgement.Choice.LEFT, Judgement.Choice.RIGHT):
        raise JudgementInvalid("strength only applies when one side is better")
    problem = reason_problem(reason)
    if problem:
        raise JudgementInvalid(f"reason {problem}")


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
    """Record a person's judgement of the comparison leased to them, with the sides in the lease's order.

    Anything else (another's comparison, one never shown, swapped sides, an expired, judged or
    skipped lease) is a ``JudgementConflict`` and writes nothing.

    Locks: the annotator's lease row and the comparison row, through the conditional UPDATEs
    that close the one and take a slot of the other; the unique (comparison, annotator)
    constraint turns a double submit into a conflict, and all of it happens in one transaction
    (one statement on PostgreSQL) so a refused vote leaves lease and count as they were. Why a
    vote was refused is asked only after the refusal, so the usual vote costs no extra query.
    A vote on a gold item then checks the annotator's gold accuracy (``annotator_flag_check``).
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
    if saved is None:
        raise _judgement_refusal(judgement)
    if saved.gold:
        annotator_flag_check(campaign=Campaign.objects.get(comparisons__id=comparison_id), annotator=annotator)
    return judgement


def judgement_record_scripted(
    *,
    annotator: User,
    comparison_id: int,
    left_id: int,
    right_id: int,
    choice: str,
    strength: str = "",
    reason: str = "",
) -> Judgement:
    """A judge that runs on the server (an oracle, a command, a test) shows itself a comparison and judges it.

    It leases ``comparison_id`` to ``annotator`` with these sides (releasing any other open lease
    of theirs, as a person's next card would) and records the vote through ``judgement_record``,
    all in one transaction. No request reaches this: a person judges only what ``lease_take``
    showed them. A comparison whose slots are judged or held by others' live leases is a conflict.
    """
    now = timezone.now()
    with transaction.atomic():
        # Locked first, so the room counted next (a fresh read) stays true until this commits.
        locked = Comparison.objects.select_for_update().filter(id=comparison_id)
        pair = locked.values_list("completion_a_id", "completion_b_id").first()
        if pair is None or {left_id, right_id} != set(pair):
            raise JudgementInvalid(f"left and right must be the two completions of comparison {comparison_id}")
        mine = Assignment.objects.filter(annotator=annotator, judged_at__isnull=True, skipped_at__isnull=True)
        mine.exclude(comparison_id=comparison_id).delete()
        if not queue.lease_room(comparison_id=comparison_id, annotator=annotator, now=now):
            raise JudgementConflict("this comparison has all the judgements it needs")
        Assignment.objects.update_or_create(
            comparison_id=comparison_id,
            annotator=annotator,
            defaults={
                "left_id": left_id,
                "right_id": right_id,
                "judged_at": None,
                "skipped_at": None,
                "expires_at": now + timedelta(seconds=settings.DUET_LEASE_SECONDS),
            },
        )
        return judgement_record(
            annotator=annotator,
            comparison_id=comparison_id,
            left_id=left_id,
            right_id=right_id,
            choice=choice,
            strength=strength,
            reason=reason,
        )


def _judgement_refusal(judgement: Judgement) -> Exception:
    """Why the vote found no live lease with these sides, or no free slot.

    The message names nothing the annotator was not shown: a comparison without their lease is
    refused the same way whether it exists or not.
    """
    comparison_id = judgement.comparison_id
    lease = (
        Assignment.objects.filter(comparison_id=comparison_id, annotator_id=judgement.annotator_id)
        .values("left_id", "right_id", "expires_at", "judged_at", "skipped_at")
        .first()
    )
    if lease is None:
        return JudgementConflict(f"comparison {comparison_id} is not the one shown to you; ask for the next one")
    if lease["judged_at"] is not None:
        return JudgementConflict("you have already judged this comparison")
    if lease["skipped_at"] is not None:
        return JudgementConflict("you skipped this comparison")
    if (judgement.left_id, judgement.right_id) != (lease["left_id"], lease["right_id"]):
        return JudgementConflict(
            f"left and right must be as you were shown them: left {lease['left_id']}, right {lease['right_id']}"
        )
    if lease["expires_at"] <= judgement.created_at:
        return JudgementConflict("your lease on this comparison expired; ask for the next comparison")
    return JudgementConflict("this comparison has all the judgements it needs")


def vote_insert(*, judgement: Judgement, annotator: User) -> VoteSaved | None:
    """Close the annotator's live lease on these sides, take a slot of the comparison, save the vote.

    ``VoteSaved`` (whether the comparison was a gold item); None, with nothing
    written, when there is no such lease or no slot was free; an
    ``IntegrityError`` when the annotator has judged this comparison already. One SQL statement on
    PostgreSQL, an ORM transaction elsewhere; either way lease, slot and vote change together or
    not at all, and a vote PostgreSQL aborts to break a deadlock runs again (``_shared.deadlock_retry``).
    """
    insert = _vote_insert_statement if _shared.single_statement() else _vote_insert_orm
    return _shared.deadlock_retry(lambda: insert(judgement, annotator))


class _Refused(Exception):
    """Rolls back a lease closed before its slot turned out to be taken."""


def _vote_insert_orm(judgement: Judgement, annotator: User) -> VoteSaved | None:
    now = judgement.created_at
    lease = Assignment.objects.filter(
        comparison_id=judgement.comparison_id,
        annotator=annotator,
        left_id=judgement.left_id,
        right_id=judgement.right_id,
        judged_at__isnull=True,
        skipped_at__isnull=True,
        expires_at__gt=now,
    )
    try:
        with transaction.atomic():
            # Closing the lease first locks its row: a second submit of the same vote waits, then
            # finds it closed; the slot's conditional UPDATE is the "at most k" check.
            if not lease.update(judged_at=now):
                return None
            # An ordinary comparison's slot first: the usual vote learns "not gold" at no extra query.
            gold = not _shared.comparison_slot_take(judgement.comparison_id, gold=False)
            if gold and not _shared.comparison_slot_take(judgement.comparison_id, gold=True):
                raise _Refused
            judgement.save(force_insert=True)
    except _Refused:
        return None
    return VoteSaved(gold=gold)


@functools.cache
def _vote_insert_sql() -> str:
    """``_vote_insert_orm`` as one PostgreSQL statement: the new judgement's id and whether it is on gold, or no row.

    ``lease`` locks the annotator's live lease on these sides (a concurrent submit of the same
    vote waits, then finds it judged); the slot, the vote and the lease's closing each read the
    part before, so without a lease or a slot nothing is written. Parameters: the ``Judgement``
    columns by name, and ``now``.
    """
    q = connection.ops.quote_name
    comparison, judgement = q(Comparison._meta.db_table), q(Judgement._meta.db_table)
    assignment = q(Assignment._meta.db_table)
    return f"""
        WITH lease AS (
          SELECT a.id FROM {assignment} a
          WHERE a.comparison_id = %(comparison_id)s AND a.annotator_id = %(annotator_id)s
            AND a.left_id = %(left_id)s AND a.right_id = %(right_id)s
            AND a.judged_at IS NULL AND a.skipped_at IS NULL AND a.expires_at > %(now)s
          FOR UPDATE
        ), slot AS (
          UPDATE {comparison} c SET judgement_count = c.judgement_count + 1
          FROM lease
          WHERE c.id = %(comparison_id)s AND c.judgement_count < c.target_judgements
          RETURNING c.id, lease.id AS lease_id, c.gold_outcome <> '' AS gold
        ), vote AS (
          INSERT INTO {judgement}
            (comparison_id, annotator_id, source, left_id, right_id, choice, winner_id, strength, reason, created_at)
          SELECT slot.id, %(annotator_id)s, %(source)s, %(left_id)s, %(right_id)s, %(choice)s, %(winner_id)s,
                 %(strength)s, %(reason)s, %(now)s
          FROM slot
          RETURNING id
        ), closed AS (
          UPDATE {assignment} a SET judged_at = %(now)s FROM slot WHERE a.id = slot.lease_id
        )
        SELECT vote.id, slot.gold FROM vote, slot"""  # noqa: S608


def _vote_insert_statement(judgement: Judgement, annotator: User) -> VoteSaved | None:
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
        return None
    # The instance now stands for the saved row, as ``save()`` would have left it.
    judgement.pk = row[0]
    judgement._state.adding = False
    judgement._state.db = connection.alias
    return VoteSaved(gold=bool(row[1]))


def judgement_undo_last(*, annotator: User, campaign: Campaign | None = None) -> Judgement | None:
    """Take back the annotator's latest judgement in ``campaign``, once; its comparison comes back as their lease.

    ``campaign`` ``None`` means their latest judgement in any campaign (the API's undo). ``None``
    when there is nothing to take back: no judgement, or the latest one came before the last
    undo in that scope (so a retried undo never takes back a second vote). A judgement a finished
    training run trained on stays: a ``JudgementConflict``. The undone comparison becomes the
    annotator's one open lease (any other is released), holding the slot the vote held, so an
    undo never adds to the leases anyone holds. The returned instance keeps the removed row's id.

    Locks the judgement's row, so that two undos at once remove it, and free its slot, once.
    """
    now = timezone.now()
    scope = {} if campaign is None else {"comparison__campaign": campaign}
    with transaction.atomic():
        # Only the judgement's row: the campaign's join must not lock the comparison the lease paths lock.
        locked = Judgement.objects.select_for_update(of=("self",)).filter(annotator=annotator, **scope)
        last = locked.order_by("-id").first()
        if last is None:
            return None
        mine = Assignment.objects.filter(annotator=annotator)
        if mine.filter(undone_at__gte=last.created_at, **scope).exists():
            return None
        if last.trained_at is not None:
            raise JudgementConflict("a finished training run trained on your last judgement, so it stays")
        Judgement.objects.filter(pk=last.pk).delete()
        Comparison.objects.filter(id=last.comparison_id, judgement_count__gt=0).update(
            judgement_count=F("judgement_count") - 1
        )
        mine.filter(judged_at__isnull=True, skipped_at__isnull=True).exclude(comparison_id=last.comparison_id).delete()
        mine.filter(comparison_id=last.comparison_id).update(
            judged_at=None,
            skipped_at=None,
            undone_at=now,
            expires_at=now + timedelta(seconds=settings.DUET_LEASE_SECONDS),
        )
    return last


def judgements_mark_trained(*, judgement_ids: Iterable[int]) -> int:
    """Mark judgements a finished training run trained on, so that none of them can be undone; how many.

    Called by the training side when a run succeeds; a judgement undone before that is simply
    not among them.
    """
    return Judgement.objects.filter(id__in=judgement_ids, trained_at__isnull=True).update(trained_at=timezone.now())
