"""Every write of the annotation app. Views, commands and the API call these and nothing else."""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate import formats, selectors
from annotate.models import ApiToken, Assignment, Comparison, Completion, Judgement, Prompt

BULK_CHUNK = 500


class JudgementConflict(Exception):
    """The annotator judged this comparison already, or it has all the judgements it wants."""


class JudgementInvalid(ValueError):
    pass


# Import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    records: int
    prompts_created: int
    comparisons_created: int = 0
    judgements_created: int = 0

    def summary(self) -> str:
        return (
            f"{self.records} records: {self.prompts_created} new prompts, "
            f"{self.comparisons_created} new comparisons, {self.judgements_created} new judgements"
        )


def _prompt_hash(record: formats.PromptRecord) -> str:
    return formats.content_hash("prompt", record.messages)


def _completion_hash(prompt_hash: str, messages: list[formats.Message], model_name: str) -> str:
    return formats.content_hash("completion", prompt_hash, messages, model_name)


def _comparison_hash(hash_a: str, hash_b: str) -> str:
    return formats.content_hash("comparison", sorted([hash_a, hash_b]))


def _bulk_get_or_create(model: Any, rows: dict[str, dict[str, Any]]) -> tuple[dict[str, int], int]:
    """Create rows missing by ``content_hash``; return ``{hash: id}`` for all and how many were new."""
    ids: dict[str, int] = {}
    hashes = list(rows)
    for start in range(0, len(hashes), BULK_CHUNK):
        chunk = hashes[start : start + BULK_CHUNK]
        ids.update(model.objects.filter(content_hash__in=chunk).values_list("content_hash", "id"))
    missing = [model(content_hash=h, **rows[h]) for h in hashes if h not in ids]
    model.objects.bulk_create(missing, batch_size=BULK_CHUNK)
    for start in range(0, len(missing), BULK_CHUNK):
        chunk = [obj.content_hash for obj in missing[start : start + BULK_CHUNK]]
        ids.update(model.objects.filter(content_hash__in=chunk).values_list("content_hash", "id"))
    return ids, len(missing)


def _prompt_rows(records: Sequence[formats.PromptRecord], source: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        rows.setdefault(
            _prompt_hash(record),
            {"messages": record.messages, "external_id": record.external_id, "tags": record.tags, "source": source},
        )
    return rows


def prompts_import(*, stream: IO[bytes], name: str, fmt: str | None = None) -> ImportResult:
    """Validate the whole file, then create the prompts it has that are new, in one transaction."""
    records = formats.read_records(stream, name=name, fmt=fmt, kind="prompts")
    with transaction.atomic():
        _, created = _bulk_get_or_create(Prompt, _prompt_rows(records, name))
    return ImportResult(records=len(records), prompts_created=created)


def pairs_import(
    *, stream: IO[bytes], name: str, fmt: str | None = None, judged: bool = False, target_judgements: int | None = None
) -> ImportResult:
    """Validate the whole file, then create prompts, completions and open comparisons atomically.

    With ``judged`` the file's own choice is recorded as a judgement whose source is the file's
    name, so re-importing the same file adds nothing.
    """
    records: list[formats.PairRecord] = formats.read_records(stream, name=name, fmt=fmt, kind="pairs")
    target = target_judgements or settings.DUET_JUDGEMENTS_PER_COMPARISON
    if target < 1:
        raise formats.ImportFileError([f"{name}: judgements per comparison must be at least 1"])
    prompt_hashes = [_prompt_hash(r.prompt) for r in records]
    with transaction.atomic():
        prompt_ids, prompts_created = _bulk_get_or_create(Prompt, _prompt_rows([r.prompt for r in records], name))
        completion_rows: dict[str, dict[str, Any]] = {}
        sides: list[tuple[str, str]] = []
        for record, p_hash in zip(records, prompt_hashes, strict=True):
            hashes = []
            for messages, model_name in (
                (record.chosen, record.chosen_model),
                (record.rejected, record.rejected_model),
            ):
                c_hash = _completion_hash(p_hash, messages, model_name)
                completion_rows.setdefault(
                    c_hash,
                    {
                        "prompt_id": prompt_ids[p_hash],
                        "messages": messages,
                        "text": formats.assistant_text(messages),
                        "model_name": model_name,
                        "generation": {"source": name},
                    },
                )
                hashes.append(c_hash)
            sides.append((hashes[0], hashes[1]))
        completion_ids, _ = _bulk_get_or_create(Completion, completion_rows)
        comparison_rows: dict[str, dict[str, Any]] = {}
        for record, p_hash, (chosen, rejected) in zip(records, prompt_hashes, sides, strict=True):
            comparison_rows.setdefault(
                _comparison_hash(chosen, rejected),
                {
                    "prompt_id": prompt_ids[p_hash],
                    "completion_a_id": completion_ids[chosen],
                    "completion_b_id": completion_ids[rejected],
                    "target_judgements": target,
                    "source": name,
                    "tags": record.prompt.tags,
                },
            )
        comparison_ids, comparisons_created = _bulk_get_or_create(Comparison, comparison_rows)
        judgements_created = 0
        if judged:
            winners = {
                comparison_ids[_comparison_hash(chosen, rejected)]: (completion_ids[chosen], completion_ids[rejected])
                for chosen, rejected in sides
            }
            judgements_created = _imported_judgements_create(winners=winners, source=name)
    return ImportResult(
        records=len(records),
        prompts_created=prompts_created,
        comparisons_created=comparisons_created,
        judgements_created=judgements_created,
    )


def _imported_judgements_create(*, winners: dict[int, tuple[int, int]], source: str) -> int:
    """A file's own choice, as one judgement per comparison from ``source``; takes a slot like a person's."""
    already = set(
        Judgement.objects.filter(comparison_id__in=list(winners), source=source, annotator=None).values_list(
            "comparison_id", flat=True
        )
    )
    created = 0
    for comparison_id, (chosen_id, rejected_id) in winners.items():
        if comparison_id in already:
            continue
        if not _comparison_slot_take(comparison_id):
            continue
        Judgement.objects.create(
            comparison_id=comparison_id,
            source=source,
            left_id=chosen_id,
            right_id=rejected_id,
            choice=Judgement.Choice.LEFT,
            winner_id=chosen_id,
        )
        created += 1
    return created


# Assignment -----------------------------------------------------------------------------


def _comparison_slot_take(comparison_id: int, pair: tuple[int, int] | None = None) -> bool:
    """Count one more judgement if the comparison has room (and ``pair`` are its two completions).

    A single conditional UPDATE: the row lock it takes (and PostgreSQL's re-check of the WHERE
    clause after waiting for it) makes this the one place that enforces "at most k judgements"
    on the ORM path; ``_judgement_insert_sql`` is its single-statement twin.
    """
    slot = Comparison.objects.filter(id=comparison_id, judgement_count__lt=F("target_judgements"))
    if pair is not None:
        a, b = pair
        slot = slot.filter(Q(completion_a_id=a, completion_b_id=b) | Q(completion_a_id=b, completion_b_id=a))
    return bool(slot.update(judgement_count=F("judgement_count") + 1))


def _single_statement() -> bool:
    """Whether the hot paths run as one SQL statement each (PostgreSQL's data-modifying ``WITH``).

    Under ``bench/annotate_load.py`` the portable ORM version of ``next`` + ``judge`` cost twelve
    round trips (with BEGIN/COMMIT) and most of the server's CPU; one statement apiece, in
    autocommit, is atomic on its own. Other databases (SQLite, the newcomer's default) take the
    ORM path, which keeps the same rules.
    """
    return connection.vendor == "postgresql"


def _statement_guard() -> AbstractContextManager[object]:
    """A savepoint when the caller holds a transaction, so a refused statement does not abort it.

    In autocommit (a request) the statement is its own transaction and needs no BEGIN/COMMIT.
    """
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


@functools.cache
def _candidate_where() -> str:
    """Conditions on comparison ``c``: open, not seen by this annotator, a slot free after live leases.

    Parameters (named): ``annotator``, ``now``. ``OFFSET 0`` keeps "not seen by this annotator" a
    probe of the unique (comparison, annotator) index for each candidate row: PostgreSQL would
    otherwise plan it as a merge anti-join that reads every assignment of every comparison below
    the first open one, a cost that grows with the whole history of judging.
    """
    assignment = connection.ops.quote_name(Assignment._meta.db_table)
    # Only table names are formatted in; the values are query parameters.
    return f"""
        c.judgement_count < c.target_judgements
        AND NOT EXISTS (
          SELECT 1 FROM {assignment} seen WHERE seen.comparison_id = c.id AND seen.annotator_id = %(annotator)s
          LIMIT 1 OFFSET 0
        )
        AND c.judgement_count + (
          SELECT count(*) FROM {assignment} live
          WHERE live.comparison_id = c.id AND live.judged_at IS NULL AND live.skipped_at IS NULL
            AND live.expires_at > %(now)s
        ) < c.target_judgements"""  # noqa: S608


@functools.cache
def _candidate_sql(skip_locked: bool) -> str:
    """The oldest comparison ``_candidate_where`` admits, for the portable path.

    SQL because the ORM spent several times more CPU building this query (two correlated
    subqueries) than the database spent running it.
    """
    comparison = connection.ops.quote_name(Comparison._meta.db_table)
    sql = f"SELECT c.* FROM {comparison} c WHERE {_candidate_where()} ORDER BY c.id LIMIT 1"  # noqa: S608
    return f"{sql} FOR UPDATE OF c SKIP LOCKED" if skip_locked else sql


@functools.cache
def _own_open_sql(lock: bool) -> str:
    """The annotator's open assignment, latest lease first (parameter: ``annotator``)."""
    assignment = connection.ops.quote_name(Assignment._meta.db_table)
    sql = f"""
        SELECT a.* FROM {assignment} a
        WHERE a.annotator_id = %(annotator)s AND a.judged_at IS NULL AND a.skipped_at IS NULL
        ORDER BY a.expires_at DESC, a.id DESC
        LIMIT 1"""  # noqa: S608
    return f"{sql} FOR UPDATE" if lock else sql


@functools.cache
def _next_sql() -> str:
    """``assignment_next`` as one PostgreSQL statement, returning the card's row or nothing.

    Renews the annotator's own open lease if its comparison still has room, or closes it (as
    skipped) and leases the oldest candidate, its row locked ``FOR UPDATE SKIP LOCKED`` so that
    concurrent annotators take different comparisons without waiting; the sides' order is drawn
    per lease. Data-modifying ``WITH`` parts run to completion whether or not the final SELECT
    reads them. Parameters: ``annotator``, ``now``, ``expires``.
    """
    q = connection.ops.quote_name
    assignment, comparison = q(Assignment._meta.db_table), q(Comparison._meta.db_table)
    prompt, completion = q(Prompt._meta.db_table), q(Completion._meta.db_table)
    return f"""
        WITH own AS (
          {_own_open_sql(True)}
        ), own_open AS (
          SELECT own.id FROM own JOIN {comparison} c ON c.id = own.comparison_id
          WHERE c.judgement_count < c.target_judgements
        ), renewed AS (
          UPDATE {assignment} a SET expires_at = %(expires)s FROM own_open WHERE a.id = own_open.id
          RETURNING a.id, a.comparison_id, a.left_id, a.right_id, a.created_at, a.expires_at
        ), closed AS (
          UPDATE {assignment} a SET skipped_at = %(now)s FROM own
          WHERE a.id = own.id AND NOT EXISTS (SELECT 1 FROM own_open)
        ), candidate AS (
          SELECT c.id, c.completion_a_id AS a, c.completion_b_id AS b, random() < 0.5 AS flip
          FROM {comparison} c
          WHERE NOT EXISTS (SELECT 1 FROM own_open) AND {_candidate_where()}
          ORDER BY c.id LIMIT 1
          FOR UPDATE OF c SKIP LOCKED
        ), leased AS (
          INSERT INTO {assignment} (comparison_id, annotator_id, left_id, right_id, created_at, expires_at)
          SELECT id, %(annotator)s, CASE WHEN flip THEN b ELSE a END, CASE WHEN flip THEN a ELSE b END,
                 %(now)s, %(expires)s
          FROM candidate
          RETURNING id, comparison_id, left_id, right_id, created_at, expires_at
        ), chosen AS (
          SELECT * FROM renewed UNION ALL SELECT * FROM leased
        )
        SELECT chosen.id, chosen.comparison_id, chosen.left_id, chosen.right_id, chosen.created_at,
               chosen.expires_at, c.prompt_id, p.messages, l.text, r.text
        FROM chosen
        JOIN {comparison} c ON c.id = chosen.comparison_id
        JOIN {prompt} p ON p.id = c.prompt_id
        JOIN {completion} l ON l.id = chosen.left_id
        JOIN {completion} r ON r.id = chosen.right_id"""  # noqa: S608


def assignment_next(*, annotator: User) -> Assignment | None:
    """The comparison this annotator should judge now, leased to them, or ``None``.

    Their own open assignment comes first (a reload or an undo shows the same card). Otherwise
    it picks the oldest comparison they have not seen that has a free slot, counting live
    leases as taken. The assignment comes with what its card shows loaded: the comparison's
    prompt messages and both completions' text (their other fields load on first use).

    Locks: the annotator's open assignment row, and the candidate comparison row ``FOR UPDATE
    SKIP LOCKED`` where the database has it. Two requests of the same annotator can both pick a
    comparison before either commits (the row lock is released by the first commit and the
    second statement's snapshot predates it); the unique (comparison, annotator) constraint
    refuses the second lease, and the retry then finds the first one as the annotator's own.
    """
    take = _assignment_take_statement if _single_statement() else _assignment_take
    for _ in range(_LEASE_ATTEMPTS - 1):
        try:
            return take(annotator)
        except IntegrityError:
            continue
    return take(annotator)


_LEASE_ATTEMPTS = 4


def _assignment_take_statement(annotator: User) -> Assignment | None:
    now = timezone.now()
    params: dict[str, Any] = {
        "annotator": annotator.pk,
        "now": now,
        "expires": now + timedelta(seconds=settings.DUET_LEASE_SECONDS),
    }
    with _statement_guard(), connection.cursor() as cursor:
        cursor.execute(_next_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return None
    pk, comparison_id, left_id, right_id, created_at, expires_at, prompt_id, messages, left_text, right_text = row
    db = connection.alias
    assignment = Assignment.from_db(
        db,
        ["id", "comparison_id", "annotator_id", "left_id", "right_id", "created_at", "expires_at"],
        [pk, comparison_id, annotator.pk, left_id, right_id, created_at, expires_at],
    )
    # The raw cursor skips the field's converter: psycopg hands JSON over as text.
    prompt = Prompt.from_db(
        db, ["id", "messages"], [prompt_id, json.loads(messages) if isinstance(messages, str) else messages]
    )
    assignment.comparison = Comparison.from_db(db, ["id", "prompt_id"], [comparison_id, prompt_id])
    assignment.comparison.prompt = prompt
    assignment.left = Completion.from_db(db, ["id", "text"], [left_id, left_text])
    assignment.right = Completion.from_db(db, ["id", "text"], [right_id, right_text])
    assignment.annotator = annotator
    return assignment


def _assignment_take(annotator: User) -> Assignment | None:
    now = timezone.now()
    lease = timedelta(seconds=settings.DUET_LEASE_SECONDS)
    with transaction.atomic():
        locking = connection.features.has_select_for_update
        own = next(iter(Assignment.objects.raw(_own_open_sql(locking), {"annotator": annotator.pk})), None)
        if own is not None:
            # Loads the comparison: one more query, only on a reload or after an undo.
            if own.comparison.judgement_count < own.comparison.target_judgements:
                own.expires_at = now + lease
                own.save(update_fields=["expires_at"])
                return selectors.assignment_for_display(assignment_id=own.pk)
            own.skipped_at = now
            own.save(update_fields=["skipped_at"])
        skip_locked = connection.features.has_select_for_update_skip_locked
        candidates = Comparison.objects.raw(_candidate_sql(skip_locked), {"annotator": annotator.pk, "now": now})
        comparison = next(iter(candidates), None)
        if comparison is None:
            return None
        a, b = comparison.completion_a_id, comparison.completion_b_id
        left, right = (a, b) if random.random() < 0.5 else (b, a)
        leased = Assignment.objects.create(
            comparison=comparison, annotator=annotator, left_id=left, right_id=right, expires_at=now + lease
        )
    return selectors.assignment_for_display(assignment_id=leased.pk)


def assignment_skip(*, annotator: User, comparison_id: int) -> None:
    """Skip a comparison: it is not shown to this annotator again and frees its slot."""
    Assignment.objects.filter(
        annotator=annotator, comparison_id=comparison_id, judged_at__isnull=True, skipped_at__isnull=True
    ).update(skipped_at=timezone.now())


# Judging --------------------------------------------------------------------------------


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
    if choice not in Judgement.Choice.values:
        raise JudgementInvalid(f"choice must be one of {', '.join(Judgement.Choice.values)}")
    if strength and strength not in Judgement.Strength.values:
        raise JudgementInvalid(f"strength must be one of {', '.join(Judgement.Strength.values)}")
    if strength and choice not in (Judgement.Choice.LEFT, Judgement.Choice.RIGHT):
        raise JudgementInvalid("strength only applies when one side is better")
    reason = reason.strip()
    if len(reason) > settings.DUET_MAX_REASON_CHARS:
        raise JudgementInvalid(f"reason is longer than {settings.DUET_MAX_REASON_CHARS} characters")
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
    insert = _judgement_insert_statement if _single_statement() else _judgement_insert
    try:
        saved = insert(judgement, annotator)
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


def _judgement_insert(judgement: Judgement, annotator: User) -> bool:
    """Take a slot of the comparison (if these are its two completions), save the vote, close the lease."""
    left, right = judgement.left_id, judgement.right_id
    now = judgement.created_at
    with transaction.atomic():
        if not _comparison_slot_take(judgement.comparison_id, (left, right)):
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
def _judgement_insert_sql() -> str:
    """``_judgement_insert`` as one PostgreSQL statement; it returns the new judgement's id, or no row.

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


def _judgement_insert_statement(judgement: Judgement, annotator: User) -> bool:
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
    with _statement_guard(), connection.cursor() as cursor:
        cursor.execute(_judgement_insert_sql(), params)
        row = cursor.fetchone()
    if row is None:
        return False
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


# Users and tokens -----------------------------------------------------------------------


def annotator_create(*, username: str, password: str, staff: bool = False) -> User:
    """Create a user who can judge, or update the password and role of one who exists."""
    if not username.strip():
        raise ValueError("username must not be empty")
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.is_staff = staff
    user.is_superuser = staff
    user.save()
    return user


def api_token_get_or_create(*, user: User) -> str:
    token, _ = ApiToken.objects.get_or_create(user=user)
    return token.key


# Export ---------------------------------------------------------------------------------

EXPORT_FORMATS = ("jsonl", "parquet", "hf")


@dataclass(frozen=True)
class ExportResult:
    path: str
    rows: int
    skipped_multi_turn: int

    def summary(self) -> str:
        note = (
            f"; {self.skipped_multi_turn} multi-turn prompts left out (use --conversational to keep them)"
            if self.skipped_multi_turn
            else ""
        )
        return f"wrote {self.rows} preference rows to {self.path}{note}"


def _arrow_schema(conversational: bool) -> Any:
    import pyarrow as pa

    text: Any = (
        pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])) if conversational else pa.string()
    )
    return pa.schema(
        [
            ("prompt", text),
            ("chosen", text),
            ("rejected", text),
            ("comparison_id", pa.int64()),
            ("agreement", pa.float64()),
            ("num_judgements", pa.int64()),
            ("chosen_model", pa.string()),
            ("rejected_model", pa.string()),
        ]
    )


def _write_parquet(rows: Iterator[dict[str, Any]], path: Path, conversational: bool) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(conversational)
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        while batch := list(itertools.islice(rows, 1000)):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count


def _write_jsonl(rows: Iterator[dict[str, Any]], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def export_preferences(
    *,
    path: str | Path,
    fmt: str,
    conversational: bool = False,
    min_agreement: float = 0.0,
    since: datetime | None = None,
    exclude_annotators: Sequence[str] = (),
) -> ExportResult:
    """Write TRL's preference dataset from the judgements, streaming, and replace ``path`` atomically.

    ``hf`` writes a ``datasets.save_to_disk`` folder (through a Parquet file, so memory stays flat).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError("min_agreement must lie between 0 and 1")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    skipped: Counter[str] = Counter()
    rows = selectors.preference_rows(
        conversational=conversational,
        since=since,
        exclude_annotators=exclude_annotators,
        min_agreement=min_agreement,
        skipped=skipped,
    )
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        staging = Path(tmp) / "data"
        if fmt == "jsonl":
            count = _write_jsonl(rows, staging)
        else:
            count = _write_parquet(rows, staging, conversational)
        if fmt == "hf":
            import datasets

            folder = Path(tmp) / "dataset"
            dataset = datasets.Dataset.from_parquet(str(staging), cache_dir=str(Path(tmp) / "cache"))
            dataset.save_to_disk(str(folder))
            del dataset
            staging = folder
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging, target)
    return ExportResult(path=str(target), rows=count, skipped_multi_turn=skipped["multi_turn"])


def export_download(
    *,
    directory: Path,
    fmt: str,
    conversational: bool = False,
    min_agreement: float = 0.0,
    since: datetime | None = None,
    exclude_annotators: Sequence[str] = (),
) -> Path:
    """Export into ``directory`` as one file to send: the dataset itself, or a zip of the ``hf`` folder."""
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    style = "conversational" if conversational else "standard"
    name = f"preferences-{style}-{stamp}"
    suffix = {"jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}.get(fmt, "")
    result = export_preferences(
        path=directory / f"{name}{suffix}",
        fmt=fmt,
        conversational=conversational,
        min_agreement=min_agreement,
        since=since,
        exclude_annotators=exclude_annotators,
    )
    if fmt != "hf":
        return Path(result.path)
    return Path(shutil.make_archive(str(directory / name), "zip", root_dir=result.path))


# Generated completions ------------------------------------------------------------------


@dataclass(frozen=True)
class NewCompletion:
    prompt_id: int
    text: str
    model_name: str
    generation: dict[str, Any]


def completions_add(*, completions: Sequence[NewCompletion]) -> list[Completion]:
    """Store model outputs with their lineage (``generation``: version, sampling settings, round).

    The content hash includes the lineage, so two samples with the same text stay two rows.
    """
    rows = [
        Completion(
            prompt_id=c.prompt_id,
            messages=[{"role": "assistant", "content": c.text}],
            text=c.text,
            model_name=c.model_name,
            generation=c.generation,
            content_hash=formats.content_hash("generated", c.prompt_id, c.text, c.model_name, c.generation),
        )
        for c in completions
    ]
    with transaction.atomic():
        Completion.objects.bulk_create(rows, batch_size=BULK_CHUNK, ignore_conflicts=True)
        by_hash = Completion.objects.in_bulk([r.content_hash for r in rows], field_name="content_hash")
    return [by_hash[r.content_hash] for r in rows]


def comparisons_create(
    *, pairs: Sequence[tuple[Completion, Completion]], source: str, target_judgements: int | None = None
) -> int:
    """Open comparisons between two completions of the same prompt; they join the queue at once.

    Pairs with identical text are skipped (nothing to judge); existing pairs are not duplicated.
    """
    target = target_judgements or settings.DUET_JUDGEMENTS_PER_COMPARISON
    rows: dict[str, dict[str, Any]] = {}
    for a, b in pairs:
        if a.prompt_id != b.prompt_id:
            raise ValueError(f"completions {a.id} and {b.id} answer different prompts")
        if a.text.strip() == b.text.strip():
            continue
        rows.setdefault(
            _comparison_hash(a.content_hash, b.content_hash),
            {
                "prompt_id": a.prompt_id,
                "completion_a_id": a.id,
                "completion_b_id": b.id,
                "target_judgements": target,
                "source": source,
            },
        )
    with transaction.atomic():
        _, created = _bulk_get_or_create(Comparison, rows)
    return created
