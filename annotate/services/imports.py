"""Importing prompt and pair files, and the judgements a judged pairs file carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from django.db import connection, transaction

from annotate import formats
from annotate.models import AuditAction, Campaign, Comparison, Completion, Judgement, Outcome, Prompt
from annotate.services._shared import BULK_CHUNK, bulk_get_or_create, comparison_hash, comparison_slot_take
from annotate.services.audit import audit_record
from annotate.services.campaigns import campaign_default, campaign_prompts_add
from annotate.services.gold import comparisons_gold_mark


@dataclass(frozen=True)
class ImportResult:
    records: int
    prompts_created: int
    comparisons_created: int = 0
    judgements_created: int = 0
    # With ``judged``: the source whose judged import already brought these very bytes.
    judged_before_as: str = ""

    def summary(self) -> str:
        text = (
            f"{self.records} records: {self.prompts_created} new prompts, "
            f"{self.comparisons_created} new comparisons, {self.judgements_created} new judgements"
        )
        if self.judged_before_as:
            text += (
                f" (this file's content was already imported with its judgements, as {self.judged_before_as}; "
                "none were added)"
            )
        return text


def _prompt_hash(record: formats.PromptRecord) -> str:
    return formats.content_hash("prompt", record.messages)


def _completion_hash(prompt_hash: str, messages: list[formats.Message], model_name: str) -> str:
    return formats.content_hash("completion", prompt_hash, messages, model_name)


def _prompt_rows(records: Sequence[formats.PromptRecord], source: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        rows.setdefault(
            _prompt_hash(record),
            {"messages": record.messages, "external_id": record.external_id, "tags": record.tags, "source": source},
        )
    return rows


def prompts_import(
    *, stream: IO[bytes], name: str, fmt: str | None = None, campaign: Campaign | None = None
) -> ImportResult:
    """Stream the file through validation, creating its new prompts batch by batch in one transaction.

    The prompts join ``campaign`` (the default one when none is given). Any bad record rolls the
    whole import back.
    """
    campaign = campaign or campaign_default()
    reader = formats.RecordReader(stream, name=name, fmt=fmt, kind="prompts")
    created = 0
    with transaction.atomic():
        for batch in reader.batches(BULK_CHUNK):
            ids, new = bulk_get_or_create(Prompt, _prompt_rows(batch, name))
            campaign_prompts_add(campaign=campaign, prompt_ids=list(ids.values()))
            created += new
        reader.finish()
        audit_record(
            action=AuditAction.PROMPTS_IMPORT, detail={"file": name, "records": reader.records, "new": created}
        )
    return ImportResult(records=reader.records, prompts_created=created)


def pairs_import(
    *,
    stream: IO[bytes],
    name: str,
    fmt: str | None = None,
    judged: bool = False,
    target_judgements: int | None = None,
    campaign: Campaign | None = None,
    gold: bool = False,
) -> ImportResult:
    """Stream the file through validation, creating prompts, completions and open comparisons atomically.

    They join ``campaign`` (the default one when none is given), with its k unless
    ``target_judgements`` is given.

    With ``judged`` the file's own choice is recorded as a judgement whose source is the file's
    name, once per content: the judgements remember the hash of the file's bytes, and a file
    whose bytes were imported judged before (under any name) adds no judgements.

    With ``gold`` every pair becomes a gold item whose expected outcome is its chosen side (a
    tie where the record says ``"tie": true``); a gold file's choice is the answer, never a vote,
    so ``gold`` and ``judged`` exclude each other.
    """
    campaign = campaign or campaign_default()
    target = target_judgements or campaign.target_judgements
    if target < 1:
        raise formats.ImportFileError([f"{name}: judgements per comparison must be at least 1"])
    if gold and judged:
        raise formats.ImportFileError([f"{name}: a gold file's choices are answers, not judgements; drop judged"])
    file_hash = formats.file_digest(stream) if judged else ""
    reader = formats.RecordReader(stream, name=name, fmt=fmt, kind="pairs")
    totals = (0, 0, 0)
    gold_outcomes: dict[int, str] | None = {} if gold else None
    with transaction.atomic():
        judged_before_as = _judged_source(file_hash) if judged else ""
        judging_hash = "" if judged_before_as else file_hash
        for batch in reader.batches(BULK_CHUNK):
            written = _pairs_write(
                batch, source=name, target=target, file_hash=judging_hash, campaign=campaign, gold=gold_outcomes
            )
            totals = (totals[0] + written[0], totals[1] + written[1], totals[2] + written[2])
        reader.finish()
        audit_record(
            action=AuditAction.PAIRS_IMPORT,
            detail={"file": name, "records": reader.records, "judged": judged, "gold": gold},
        )
        if gold_outcomes:
            comparisons_gold_mark(outcomes=gold_outcomes, source=name)
    return ImportResult(
        records=reader.records,
        prompts_created=totals[0],
        comparisons_created=totals[1],
        judgements_created=totals[2],
        judged_before_as=judged_before_as,
    )


def _judged_source(file_hash: str) -> str:
    """The source of an earlier judged import of these bytes, or "".

    Takes a lock for the rest of the transaction, so that a second judged import of the same
    bytes waits for the first to commit and then finds it (instead of both finding none, or the
    second failing on the first's new prompts): on PostgreSQL an advisory lock keyed by the hash
    (60 of its bits fit a bigint); SQLite's IMMEDIATE transactions already run one writer at a time.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(file_hash[:15], 16)])
    earlier = Judgement.objects.filter(annotator=None, import_hash=file_hash).values_list("source", flat=True)
    return earlier.first() or ""


def _pairs_write(
    records: Sequence[formats.PairRecord],
    *,
    source: str,
    target: int,
    file_hash: str,
    campaign: Campaign,
    gold: dict[int, str] | None = None,
) -> tuple[int, int, int]:
    """Write one batch; return how many prompts, comparisons and judgements (if ``file_hash``) were new.

    With ``gold`` (a dict) each comparison's expected outcome is added to it, for marking after the batches.
    """
    prompt_hashes = [_prompt_hash(r.prompt) for r in records]
    prompt_ids, prompts_created = bulk_get_or_create(Prompt, _prompt_rows([r.prompt for r in records], source))
    campaign_prompts_add(campaign=campaign, prompt_ids=list(prompt_ids.values()))
    completion_ids, sides = _pair_completions(records, prompt_hashes, prompt_ids, source)
    comparison_rows: dict[str, dict[str, Any]] = {}
    for record, p_hash, (chosen, rejected) in zip(records, prompt_hashes, sides, strict=True):
        comparison_rows.setdefault(
            comparison_hash(chosen, rejected),
            {
                "prompt_id": prompt_ids[p_hash],
                "completion_a_id": completion_ids[chosen],
                "completion_b_id": completion_ids[rejected],
                "target_judgements": target,
                "source": source,
                "tags": record.prompt.tags,
            },
        )
    comparison_ids, comparisons_created = bulk_get_or_create(
        Comparison, comparison_rows, scope={"campaign_id": campaign.pk}
    )
    if gold is not None:
        gold.update(_gold_outcomes(records, sides, completion_ids, comparison_ids))
    judgements_created = 0
    if file_hash:
        winners = {
            comparison_ids[comparison_hash(chosen, rejected)]: (completion_ids[chosen], completion_ids[rejected])
            for chosen, rejected in sides
        }
        judgements_created = _imported_judgements_create(winners=winners, source=source, file_hash=file_hash)
    return prompts_created, comparisons_created, judgements_created


def _gold_outcomes(
    records: Sequence[formats.PairRecord],
    sides: Sequence[tuple[str, str]],
    completion_ids: dict[str, int],
    comparison_ids: dict[str, int],
) -> dict[int, str]:
    """``{comparison id: expected outcome}``: the chosen completion, named as the comparison stores it, or a tie.

    A comparison that existed before may hold the pair the other way round, so its completion a is read back.
    """
    ids = [comparison_ids[comparison_hash(chosen, rejected)] for chosen, rejected in sides]
    completion_a = dict(Comparison.objects.filter(id__in=ids).values_list("id", "completion_a_id"))
    outcomes: dict[int, str] = {}
    for record, comparison_id, (chosen, _) in zip(records, ids, sides, strict=True):
        if record.tie:
            outcomes[comparison_id] = Outcome.TIE
        else:
            outcomes[comparison_id] = Outcome.A if completion_a[comparison_id] == completion_ids[chosen] else Outcome.B
    return outcomes


def _pair_completions(
    records: Sequence[formats.PairRecord], prompt_hashes: Sequence[str], prompt_ids: dict[str, int], source: str
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Create the pairs' completions; return ``{hash: id}`` and each record's (chosen, rejected) hashes."""
    rows: dict[str, dict[str, Any]] = {}
    sides: list[tuple[str, str]] = []
    for record, p_hash in zip(records, prompt_hashes, strict=True):
        hashes = []
        for messages, model_name in ((record.chosen, record.chosen_model), (record.rejected, record.rejected_model)):
            c_hash = _completion_hash(p_hash, messages, model_name)
            rows.setdefault(
                c_hash,
                {
                    "prompt_id": prompt_ids[p_hash],
                    "messages": messages,
                    "text": formats.assistant_text(messages),
                    "model_name": model_name,
                    "generation": {"source": source},
                },
            )
            hashes.append(c_hash)
        sides.append((hashes[0], hashes[1]))
    ids, _ = bulk_get_or_create(Completion, rows)
    return ids, sides


def _imported_judgements_create(*, winners: dict[int, tuple[int, int]], source: str, file_hash: str) -> int:
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
        if not comparison_slot_take(comparison_id):
            continue
        Judgement.objects.create(
            comparison_id=comparison_id,
            source=source,
            import_hash=file_hash,
            left_id=chosen_id,
            right_id=rejected_id,
            choice=Judgement.Choice.LEFT,
            winner_id=chosen_id,
        )
        created += 1
    return created
