"""Leasing comparisons to annotators: the next card to show, and skipping one.

Both versions of ``next`` live here side by side, behind ``lease_take``: one PostgreSQL
statement, and its portable ORM twin for other databases. Both hand back the same ``Card``,
plain values only, so a template reading it runs no query on either database.
"""

from __future__ import annotations

import functools
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from annotate import formats
from annotate.models import Assignment, Campaign, Comparison, Completion, Prompt
from annotate.services import _shared, queue_rules
from annotate.services.campaigns import campaign_default

# Two requests of one annotator can race to lease (see ``lease_take``); the loser's retry usually
# finds the winner's lease as its own. It loses again only if the other request judged that lease
# and took a new one during the retry: a client hammering from two tabs in lockstep can do that a
# few times running (CI saw four), so the loser also waits a random moment, growing per attempt,
# which breaks the lockstep.
_LEASE_ATTEMPTS = 8
_LEASE_BACKOFF_SECONDS = 0.005

# Draws whether a card is a gold item; a test may swap in a seeded ``random.Random``.
gold_random = random.Random()


@dataclass(frozen=True)
class CardSide:
    """One completion as the card shows it."""

    id: int
    text: str


@dataclass(frozen=True)
class Card:
    """A leased comparison with everything its card shows: the page and the API read only this."""

    assignment_id: int
    comparison_id: int
    prompt: tuple[formats.Message, ...]
    left: CardSide
    right: CardSide
    expires_at: datetime


@functools.cache
def _room_where() -> str:
    """Condition on comparison ``c``: a slot free once its judgements and others' live leases are counted.

    Parameters (named): ``annotator``, ``now``. The annotator's own lease is left out of the count,
    so the same condition decides whether to lease a new comparison and whether to renew their own.
    """
    assignment = connection.ops.quote_name(Assignment._meta.db_table)
    # Only table names are formatted in; the values are query parameters.
    return f"""
        c.judgement_count + (
          SELECT count(*) FROM {assignment} live
          WHERE live.comparison_id = c.id AND live.judged_at IS NULL AND live.skipped_at IS NULL
            AND live.expires_at > %(now)s AND live.annotator_id <> %(annotator)s
        ) < c.target_judgements"""  # noqa: S608


@functools.cache
def _candidate_where(gold: bool = False) -> str:
    """Conditions on comparison ``c``: open, not seen by this annotator, a slot free after live leases.

    Seen means judged, skipped or leased now: a lease that expired unjudged is released by
    ``lease_take`` and its comparison may be leased again. Parameters (named): ``annotator``,
    ``now``. ``OFFSET 0`` keeps "not seen by this annotator" a
    probe of the unique (comparison, annotator) index for each candidate row: PostgreSQL would
    otherwise plan it as a merge anti-join that reads every assignment of every comparison below
    the first open one, a cost that grows with the whole history of judging. A gold item skips
    the live-lease count: its k is ``GOLD_TARGET_JUDGEMENTS``, beyond any team's size, so the count
    cannot bind, and it would read every assignment the item ever had (every annotator's).
    """
    assignment = connection.ops.quote_name(Assignment._meta.db_table)
    room = "" if gold else f"AND {_room_where()}"
    return f"""
        c.judgement_count < c.target_judgements
        AND NOT EXISTS (
          SELECT 1 FROM {assignment} seen WHERE seen.comparison_id = c.id AND seen.annotator_id = %(annotator)s
            AND (seen.judged_at IS NOT NULL OR seen.skipped_at IS NOT NULL OR seen.expires_at > %(now)s)
          LIMIT 1 OFFSET 0
        )
        {room}"""  # noqa: S608


@functools.cache
def _unchanged_since_read() -> str:
    """On PostgreSQL, a condition that refuses comparison ``c`` once someone changed its row since this statement began.

    The room count reads the statement's snapshot, so a lease committed after it started is
    missed. Whoever leases (or judges) a comparison changes its row (``_LEASE_MARK``), and locking
    a row changed since the snapshot makes PostgreSQL re-check this condition on the new version:
    its ``xmin`` then differs from the one the subquery reads in the snapshot, and the row is
    passed over, so no comparison gets more than k holders. Other databases serialise writes.
    """
    if connection.vendor != "postgresql":
        return ""
    comparison = connection.ops.quote_name(Comparison._meta.db_table)
    return f"AND c.xmin = (SELECT v.xmin FROM {comparison} v WHERE v.id = c.id)"  # noqa: S608


@functools.cache
def _lease_mark_sql() -> str:
    """The row change that tells a concurrent leaser a lease was taken (parameter: ``comparison``)."""
    comparison = connection.ops.quote_name(Comparison._meta.db_table)
    return f"UPDATE {comparison} SET judgement_count = judgement_count WHERE id = %(comparison)s"  # noqa: S608


def _kind_where(gold: bool) -> str:
    """Condition on comparison ``c``: in the campaign (parameter ``campaign``), and a gold item or an ordinary one.

    Written as the partial indexes' conditions are (``Comparison.Meta.indexes``), so that each
    kind's pick reads its own index in id order.
    """
    kind = "c.gold_outcome <> ''" if gold else "c.gold_outcome = ''"
    return f"c.campaign_id = %(campaign)s AND {kind}"


# Where a pick starts: from the first id (ordinary comparisons, oldest first), or, for a gold item,
# at or after a random start id and else before it. Every annotator wants every gold item once, so
# starting all of them at the oldest one would have them queue on the same few rows.
_RANGES = {"all": "", "from": "AND c.id >= %(start)s", "before": "AND c.id < %(start)s"}


@functools.cache
def _candidate_sql(skip_locked: bool, gold: bool, start: str = "all") -> str:
    """The first comparison of the kind ``_candidate_where`` admits in the range ``start`` names, for the portable path.

    SQL because the ORM spent several times more CPU building this query (two correlated
    subqueries) than the database spent running it.
    """
    comparison = connection.ops.quote_name(Comparison._meta.db_table)
    sql = f"""
        SELECT c.* FROM {comparison} c
        WHERE {_kind_where(gold)} {_RANGES[start]} AND {_candidate_where(gold)} {_unchanged_since_read()}
        ORDER BY c.id LIMIT 1"""  # noqa: S608
    return f"{sql} FOR UPDATE OF c SKIP LOCKED" if skip_locked else sql


@functools.cache
def _gold_span_sql() -> str:
    """The lowest and highest id of the campaign's gold items (parameter ``campaign``): two index endpoints."""
    comparison = connection.ops.quote_name(Comparison._meta.db_table)
    return f"SELECT min(c.id), max(c.id) FROM {comparison} c WHERE {_kind_where(True)}"  # noqa: S608


@functools.cache
def _own_open_sql(lock: bool) -> str:
    """The annotator's open assignment; the database keeps at most one (parameter: ``annotator``)."""
    assignment = connection.ops.quote_name(Assignment._meta.db_table)
    sql = f"""
        SELECT a.* FROM {assignment} a
        WHERE a.annotator_id = %(annotator)s AND a.judged_at IS NULL AND a.skipped_at IS NULL"""  # noqa: S608
    return f"{sql} FOR UPDATE" if lock else sql


@functools.cache
def _gold_ctes() -> str:
    """The gold pick of ``_next_sql``: the first gold item the annotator has not seen at or after a random start,
    else the first before it (parameter ``campaign``)."""
    comparison = connection.ops.quote_name(Comparison._meta.db_table)
    return f"""
        ), gold_span AS (
          SELECT min(c.id) AS low, max(c.id) AS high FROM {comparison} c
          WHERE NOT EXISTS (SELECT 1 FROM own_open) AND {_kind_where(True)}
        ), gold_start AS (
          SELECT low + floor(random() * (high - low + 1))::bigint AS id FROM gold_span
        ), gold_from AS (
          SELECT c.id, c.completion_a_id AS a, c.completion_b_id AS b FROM {comparison} c
          WHERE c.id >= (SELECT id FROM gold_start)
            AND {_kind_where(True)} AND {_candidate_where(True)} {_unchanged_since_read()}
          ORDER BY c.id LIMIT 1
          FOR UPDATE OF c SKIP LOCKED
        ), gold_before AS (
          SELECT c.id, c.completion_a_id AS a, c.completion_b_id AS b FROM {comparison} c
          WHERE NOT EXISTS (SELECT 1 FROM gold_from) AND c.id < (SELECT id FROM gold_start)
            AND {_kind_where(True)} AND {_candidate_where(True)} {_unchanged_since_read()}
          ORDER BY c.id LIMIT 1
          FOR UPDATE OF c SKIP LOCKED
        ), gold AS (
          SELECT * FROM gold_from UNION ALL SELECT * FROM gold_before"""  # noqa: S608


@functools.cache
def _next_sql(gold: bool) -> str:
    """``lease_take`` as one PostgreSQL statement, returning the card's row or nothing.

    Renews the annotator's own open lease while it is live and in the campaign (it holds its
    slot), or releases it and leases the oldest candidate: a gold item the annotator has not seen
    when ``gold`` is drawn (the first at or after a random start, else the first before it), else
    (or when none is left) the oldest ordinary comparison. Its row is locked
    ``FOR UPDATE SKIP LOCKED`` so that concurrent annotators take different comparisons without
    waiting, and marked (``_lease_mark_sql``) so that none takes it on a stale count; the sides'
    order is drawn per lease. Without ``gold`` the statement has no gold part at all: PostgreSQL
    plans every statement afresh, and the gold part would double the planning of the usual card.
    Data-modifying ``WITH`` parts run to completion whether or not the final SELECT reads them; ``leased`` joins
    ``released`` so that the old lease is gone before the new one is inserted, as the
    one-open-assignment-per-annotator constraint requires. Parameters: ``annotator``, ``campaign``,
    ``now``, ``expires``. The columns are ``Card``'s, in order.
    """
    q = connection.ops.quote_name
    assignment, comparison = q(Assignment._meta.db_table), q(Comparison._meta.db_table)
    prompt, completion = q(Prompt._meta.db_table), q(Completion._meta.db_table)
    gold_part = _gold_ctes() if gold else ""
    not_gold = "AND NOT EXISTS (SELECT 1 FROM gold)" if gold else ""
    picked = "SELECT * FROM gold UNION ALL SELECT * FROM ordinary" if gold else "SELECT * FROM ordinary"
    return f"""
        WITH own AS (
          {_own_open_sql(True)}
        ), own_open AS (
          SELECT own.id FROM own JOIN {comparison} c ON c.id = own.comparison_id
          WHERE own.expires_at > %(now)s AND c.judgement_count < c.target_judgements
            AND c.campaign_id = %(campaign)s
        ), renewed AS (
          UPDATE {assignment} a SET expires_at = %(expires)s FROM own_open WHERE a.id = own_open.id
          RETURNING a.id, a.comparison_id, a.left_id, a.right_id, a.expires_at
        ), released AS (
          DELETE FROM {assignment} a USING own
          WHERE a.id = own.id AND NOT EXISTS (SELECT 1 FROM own_open)
          RETURNING a.id
        {gold_part}
        ), ordinary AS (
          SELECT c.id, c.completion_a_id AS a, c.completion_b_id AS b FROM {comparison} c
          WHERE NOT EXISTS (SELECT 1 FROM own_open) {not_gold}
            AND {_kind_where(False)} AND {_candidate_where()} {_unchanged_since_read()}
          ORDER BY c.id LIMIT 1
          FOR UPDATE OF c SKIP LOCKED
        ), candidate AS (
          SELECT id, a, b, random() < 0.5 AS flip FROM ({picked}) n
        ), leased AS (
          INSERT INTO {assignment} (comparison_id, annotator_id, left_id, right_id, created_at, expires_at)
          SELECT n.id, %(annotator)s, CASE WHEN n.flip THEN n.b ELSE n.a END, CASE WHEN n.flip THEN n.a ELSE n.b END,
                 %(now)s, %(expires)s
          FROM candidate n LEFT JOIN released ON true
          RETURNING id, comparison_id, left_id, right_id, expires_at
        ), marked AS (
          UPDATE {comparison} c SET judgement_count = c.judgement_count FROM leased WHERE c.id = leased.comparison_id
        ), chosen AS (
          SELECT * FROM renewed UNION ALL SELECT * FROM leased
        )
        SELECT chosen.id, chosen.comparison_id, p.messages, chosen.left_id, l.text, chosen.right_id, r.text,
               chosen.expires_at
        FROM chosen
        JOIN {comparison} c ON c.id = chosen.comparison_id
        JOIN {prompt} p ON p.id = c.prompt_id
        JOIN {completion} l ON l.id = chosen.left_id
        JOIN {completion} r ON r.id = chosen.right_id"""  # noqa: S608


# The assignment's fields ``_card`` reads on the ORM path, in the order of ``_next_sql``'s columns.
_CARD_FIELDS = (
    "id",
    "comparison_id",
    "comparison__prompt__messages",
    "left_id",
    "left__text",
    "right_id",
    "right__text",
    "expires_at",
)


def _card(row: tuple[Any, ...]) -> Card:
    """A card from its columns: assignment, comparison, prompt messages, left id and text, right id and text, expiry."""
    assignment_id, comparison_id, messages, left_id, left_text, right_id, right_text, expires_at = row
    # The raw cursor skips the JSON field's converter: psycopg may hand the messages over as text.
    if isinstance(messages, str):
        messages = json.loads(messages)
    return Card(
        assignment_id=assignment_id,
        comparison_id=comparison_id,
        prompt=tuple(messages),
        left=CardSide(id=left_id, text=left_text),
        right=CardSide(id=right_id, text=right_text),
        expires_at=expires_at,
    )


def lease_take(*, annotator: User, campaign: Campaign | None = None) -> Card | None:
    """The comparison this annotator should judge now in ``campaign``, leased to them, as its card; or ``None``.

    ``None`` for the campaign means the default one. The campaign's rules come first
    (``queue_rules.queue_check``: a ``QueueRefused`` when it is paused or closed, the annotator
    is not among its people, or they are flagged and it pauses flagged annotators). Their own
    open assignment in the campaign comes next while it is live (a reload or an undo shows the
    same card); an expired one, or one in another campaign, is released, so it holds no slot and
    may come back later. Otherwise, with probability ``campaign.gold_rate``, the oldest gold
    item of the campaign they have never judged (it looks like any other card), and else, or
    when none is left, the oldest ordinary comparison of the campaign they have not seen that
    has a free slot, counting live leases as taken. One SQL statement on PostgreSQL, the ORM
    elsewhere; the same rules and the same ``Card`` either way. An annotator holds one live
    lease at most (so at most one per campaign), a comparison k holders at most (judgements and
    live leases together).

    Locks: the annotator's open assignment row, and the candidate comparison row ``FOR UPDATE
    SKIP LOCKED`` where the database has it. Two requests of the same annotator can both pick a
    comparison before either commits (the row lock is released by the first commit and the
    second statement's snapshot predates it); the one-open-assignment-per-annotator constraint
    refuses the second lease, and the retry then finds the first one as the annotator's own. A
    lease PostgreSQL aborts to break a deadlock runs again (``_shared.deadlock_retry``).
    """
    campaign = campaign or campaign_default()
    queue_rules.queue_check(annotator=annotator, campaign=campaign)
    gold = campaign.gold_rate > 0 and gold_random.random() < campaign.gold_rate
    take = _lease_take_statement if _shared.single_statement() else _lease_take_orm
    for attempt in range(1, _LEASE_ATTEMPTS):
        try:
            return _shared.deadlock_retry(lambda: take(annotator, campaign.pk, gold))
        except IntegrityError:
            time.sleep(random.uniform(0, _LEASE_BACKOFF_SECONDS * attempt))
    return _shared.deadlock_retry(lambda: take(annotator, campaign.pk, gold))


assignment_next = lease_take


def _lease_take_statement(annotator: User, campaign_id: int, gold: bool) -> Card | None:
    now = timezone.now()
    params: dict[str, Any] = {
        "annotator": annotator.pk,
        "campaign": campaign_id,
        "now": now,
        "expires": now + timedelta(seconds=settings.DUET_LEASE_SECONDS),
    }
    with _shared.statement_guard(), connection.cursor() as cursor:
        cursor.execute(_next_sql(gold), params)
        row = cursor.fetchone()
    return None if row is None else _card(row)


def _lease_take_orm(annotator: User, campaign_id: int, gold: bool) -> Card | None:
    now = timezone.now()
    lease = timedelta(seconds=settings.DUET_LEASE_SECONDS)
    with transaction.atomic():
        locking = connection.features.has_select_for_update
        own = next(iter(Assignment.objects.raw(_own_open_sql(locking), {"annotator": annotator.pk})), None)
        if own is not None:
            # Loads the comparison: one more query, only on a reload or after an undo.
            mine = own.comparison
            live = own.expires_at > now and mine.judgement_count < mine.target_judgements
            if live and mine.campaign_id == campaign_id:
                own.expires_at = now + lease
                own.save(update_fields=["expires_at"])
                return _card_load(own.pk)
            own.delete()
        comparison = _candidate_orm(annotator, campaign_id, gold, now)
        if comparison is None:
            return None
        a, b = comparison.completion_a_id, comparison.completion_b_id
        left, right = (a, b) if random.random() < 0.5 else (b, a)
        leased = Assignment.objects.create(
            comparison=comparison, annotator=annotator, left_id=left, right_id=right, expires_at=now + lease
        )
        lease_mark(comparison_id=comparison.pk)
    return _card_load(leased.pk)


def _candidate_orm(annotator: User, campaign_id: int, gold: bool, now: datetime) -> Comparison | None:
    """The portable path's pick: a gold item when drawn and one is left (from a random start), else an ordinary one."""
    skip_locked = connection.features.has_select_for_update_skip_locked
    params: dict[str, Any] = {"annotator": annotator.pk, "campaign": campaign_id, "now": now}
    picks: list[tuple[bool, str]] = [(False, "all")]
    if gold:
        with connection.cursor() as cursor:
            cursor.execute(_gold_span_sql(), params)
            span = cursor.fetchone()
        if span is not None and span[0] is not None:
            params["start"] = random.randint(span[0], span[1])
            picks[:0] = [(True, "from"), (True, "before")]
    for kind, start in picks:
        comparison = next(iter(Comparison.objects.raw(_candidate_sql(skip_locked, kind, start), params)), None)
        if comparison is not None:
            return comparison
    return None


def lease_mark(*, comparison_id: int) -> None:
    """Tell concurrent leasers that ``comparison_id`` has one more holder (see ``_unchanged_since_read``)."""
    with connection.cursor() as cursor:
        cursor.execute(_lease_mark_sql(), {"comparison": comparison_id})


def lease_room(*, comparison_id: int, annotator: User, now: datetime) -> bool:
    """Whether ``comparison_id`` has a slot for ``annotator`` beside its judgements and others' live leases."""
    comparison = connection.ops.quote_name(Comparison._meta.db_table)
    sql = f"SELECT c.* FROM {comparison} c WHERE c.id = %(comparison)s AND {_room_where()}"  # noqa: S608
    params = {"comparison": comparison_id, "annotator": annotator.pk, "now": now}
    return next(iter(Comparison.objects.raw(sql, params)), None) is not None


def _card_load(assignment_id: int) -> Card:
    """The ORM path's card: one query, the same columns as ``_next_sql`` returns."""
    return _card(Assignment.objects.filter(id=assignment_id).values_list(*_CARD_FIELDS).get())


def assignment_skip(*, annotator: User, comparison_id: int) -> None:
    """Skip a comparison: it is not shown to this annotator again and frees its slot."""
    Assignment.objects.filter(
        annotator=annotator, comparison_id=comparison_id, judged_at__isnull=True, skipped_at__isnull=True
    ).update(skipped_at=timezone.now())
