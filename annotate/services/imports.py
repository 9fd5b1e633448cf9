"""Importing prompt and pair files, and the judgements a judged pairs file carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.db import transaction

from annotate import formats
from annotate.models import AuditAction, Comparison, Completion, Judgement, Prompt
from annotate.services._shared import bulk_get_or_create, comparison_hash, comparison_slot_take
from annotate.services.audit import audit_record


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
        _, created = bulk_get_or_create(Prompt, _prompt_rows(records, name))
        audit_record(action=AuditAction.PROMPTS_IMPORT, detail={"file": name, "records": len(records), "new": created})
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
        prompt_ids, prompts_created = bulk_get_or_create(Prompt, _prompt_rows([r.prompt for r in records], name))
        completion_ids, sides = _pair_completions(records, prompt_hashes, prompt_ids, name)
        comparison_rows: dict[str, dict[str, Any]] = {}
        for record, p_hash, (chosen, rejected) in zip(records, prompt_hashes, sides, strict=True):
            comparison_rows.setdefault(
                comparison_hash(chosen, rejected),
                {
                    "prompt_id": prompt_ids[p_hash],
                    "completion_a_id": completion_ids[chosen],
                    "completion_b_id": completion_ids[rejected],
                    "target_judgements": target,
                    "source": name,
                    "tags": record.prompt.tags,
                },
            )
        comparison_ids, comparisons_created = bulk_get_or_create(Comparison, comparison_rows)
        judgements_created = 0
        if judged:
            winners = {
                comparison_ids[comparison_hash(chosen, rejected)]: (completion_ids[chosen], completion_ids[rejected])
                for chosen, rejected in sides
            }
            judgements_created = _imported_judgements_create(winners=winners, source=name)
        audit_record(action=AuditAction.PAIRS_IMPORT, detail={"file": name, "records": len(records), "judged": judged})
    return ImportResult(
        records=len(records),
        prompts_created=prompts_created,
        comparisons_created=comparisons_created,
        judgements_created=judgements_created,
    )


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
        if not comparison_slot_take(comparison_id):
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
