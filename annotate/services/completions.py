"""Model outputs from a generation round, and the comparisons that put them in the queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from annotate import formats
from annotate.models import Campaign, Comparison, Completion, Purpose
from annotate.services._shared import BULK_CHUNK, bulk_get_or_create, comparison_hash
from annotate.services.campaigns import campaign_default


@dataclass(frozen=True)
class NewCompletion:
    prompt_id: int
    text: str
    model_name: str
    generation: dict[str, Any]
    model_version_id: int | None = None


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
            model_version_id=c.model_version_id,
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
    *,
    pairs: Sequence[tuple[Completion, Completion]],
    source: str,
    target_judgements: int | None = None,
    purpose: str = Purpose.TRAINING,
    campaign: Campaign | None = None,
) -> int:
    """Open comparisons between two completions of the same prompt; they join the queue at once.

    They belong to ``campaign`` (the default one when none is given), with its k unless
    ``target_judgements`` is given.
    Pairs with identical text are skipped (nothing to judge); existing pairs are not duplicated.
    An evaluation comparison's judgements measure a model and are never trained on.
    """
    if purpose not in Purpose.values:
        raise ValueError(f"purpose must be one of {', '.join(Purpose.values)}")
    campaign = campaign or campaign_default()
    target = target_judgements or campaign.target_judgements
    rows: dict[str, dict[str, Any]] = {}
    for a, b in pairs:
        if a.prompt_id != b.prompt_id:
            raise ValueError(f"completions {a.id} and {b.id} answer different prompts")
        if a.text.strip() == b.text.strip():
            continue
        rows.setdefault(
            comparison_hash(a.content_hash, b.content_hash),
            {
                "prompt_id": a.prompt_id,
                "completion_a_id": a.id,
                "completion_b_id": b.id,
                "target_judgements": target,
                "source": source,
                "purpose": purpose,
            },
        )
    with transaction.atomic():
        _, created = bulk_get_or_create(Comparison, rows, scope={"campaign_id": campaign.pk})
    return created
