"""Which judgements a dataset is built from and how a comparison's judgements become a preference row."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from annotate.filters import JudgementFilter
from annotate.models import (
    AnnotatorFlag,
    Comparison,
    ExportJob,
    Judgement,
    Outcome,
    Purpose,
)
from annotate.selectors import timing

# Decided comparisons loaded per query with their prompt and both completions: one query per
# 500 rows, memory bounded by 500 comparisons' texts, and the IN list under the 999 parameters
# an older SQLite takes.
EXPORT_CHUNK = 500
# Judgement rows per fetch when streaming (a server-side cursor's batch on PostgreSQL): each row
# is a few ids, so 5,000 of them cost well under a megabyte and few round trips.
JUDGEMENT_ROWS_PER_FETCH = 5000


# Export ---------------------------------------------------------------------------------


def judgements_matching(*, judgement_filter: JudgementFilter) -> QuerySet[Judgement]:
    """The judgements ``judgement_filter`` keeps; its ``min_agreement`` applies per comparison, later.

    A source is left out only for imported judgements: a person's judgement has the source
    "human", which no import file is named. Judgements on evaluation comparisons are left out
    unless the filter includes them: this is where "evaluation is never trained on" holds, for the
    export, a training run's frozen dataset and the API alike; and so it is for gold items.
    ``exclude_rushed`` leaves out votes faster than their campaign's ``rushed_seconds``
    (``annotate.selectors.timing``).
    """
    judgements = Judgement.objects.filter(comparison__gold_outcome="")
    if judgement_filter.campaign is not None:
        judgements = judgements.filter(comparison__campaign__slug=judgement_filter.campaign)
    if not judgement_filter.include_flagged:
        flagged = AnnotatorFlag.objects.filter(
            campaign_id=OuterRef("comparison__campaign_id"),
            annotator_id=OuterRef("annotator_id"),
            cleared_at__isnull=True,
        )
        judgements = judgements.exclude(Exists(flagged))
    if judgement_filter.exclude_rushed:
        judgements = timing.with_unrushed_from(judgements).exclude(timing.rushed_q())
    if not judgement_filter.include_evaluation:
        judgements = judgements.exclude(comparison__purpose=Purpose.EVALUATION)
    if judgement_filter.since is not None:
        judgements = judgements.filter(created_at__gte=judgement_filter.since)
    if judgement_filter.exclude_annotators:
        judgements = judgements.exclude(annotator__username__in=judgement_filter.exclude_annotators)
    if judgement_filter.exclude_sources:
        judgements = judgements.exclude(annotator__isnull=True, source__in=judgement_filter.exclude_sources)
    return judgements


@dataclass(frozen=True)
class Decision:
    """The aggregate of one comparison's judgements: a winner, or none, and the judgements counted.

    ``adjudicated``: staff decided the outcome, so it stands whatever the votes' agreement.
    """

    comparison_id: int
    winner_id: int | None
    loser_id: int | None
    agreement: float
    num_judgements: int
    judgement_ids: tuple[int, ...] = ()
    adjudicated: bool = False


def decide(
    comparison_id: int,
    completion_ids: tuple[int, int],
    votes: Sequence[tuple[str, int | None]],
    judgement_ids: tuple[int, ...] = (),
    adjudicated_outcome: str = "",
) -> Decision:
    """Majority over the four outcomes (each side, tie, both bad); only a unique side wins.

    An adjudicated outcome (``Outcome``: completion a or b, tie, both bad) replaces the majority.
    ``agreement`` is the share of judgements that voted for the winning outcome (the adjudicated
    one included, which may have had few votes or none).
    """
    tally: Counter[str | int] = Counter(winner if winner is not None else choice for choice, winner in votes)
    total = len(votes)
    if adjudicated_outcome:
        by_letter: dict[str, str | int] = {Outcome.A: completion_ids[0], Outcome.B: completion_ids[1]}
        top_key = by_letter.get(adjudicated_outcome, adjudicated_outcome)
        top_count, unique = tally[top_key], True
    else:
        ranked = tally.most_common()
        top_key, top_count = ranked[0]
        unique = len(ranked) == 1 or ranked[1][1] < top_count
    adjudicated = bool(adjudicated_outcome)
    if not unique or not isinstance(top_key, int):
        return Decision(comparison_id, None, None, top_count / total, total, judgement_ids, adjudicated)
    loser = completion_ids[1] if top_key == completion_ids[0] else completion_ids[0]
    return Decision(comparison_id, top_key, loser, top_count / total, total, judgement_ids, adjudicated)


def preference_decisions(*, judgement_filter: JudgementFilter) -> Iterator[Decision]:
    """Decided comparisons in id order, streamed: memory does not grow with the judgement count.

    An adjudicated winner is decided whatever the votes' agreement; ``min_agreement`` is for majorities.
    """
    rows = (
        judgements_matching(judgement_filter=judgement_filter)
        .order_by("comparison_id", "id")
        .values_list(
            "id",
            "comparison_id",
            "choice",
            "winner_id",
            "comparison__completion_a_id",
            "comparison__completion_b_id",
            "comparison__adjudicated_outcome",
        )
        .iterator(chunk_size=JUDGEMENT_ROWS_PER_FETCH)
    )
    for comparison_id, group in itertools.groupby(rows, key=lambda row: row[1]):
        votes = list(group)
        decision = decide(
            comparison_id,
            (votes[0][4], votes[0][5]),
            [(v[2], v[3]) for v in votes],
            judgement_ids=tuple(v[0] for v in votes),
            adjudicated_outcome=votes[0][6],
        )
        if decision.winner_id is not None and (
            decision.adjudicated or decision.agreement >= judgement_filter.min_agreement
        ):
            yield decision


def export_rows_at_most(*, judgement_filter: JudgementFilter) -> int:
    """The comparisons with a judgement the filter keeps: no export with it writes more rows (one query)."""
    return judgements_matching(judgement_filter=judgement_filter).values("comparison_id").distinct().count()


def export_job(*, job_id: int) -> ExportJob | None:
    return ExportJob.objects.select_related("created_by").filter(pk=job_id).first()


@dataclass
class ExportTally:
    """What a streamed export used, filled in as its rows are read."""

    skipped_multi_turn: int = 0
    comparison_ids: list[int] = field(default_factory=list)
    judgement_ids: list[int] = field(default_factory=list)


def preference_rows(
    *, judgement_filter: JudgementFilter, conversational: bool, tally: ExportTally | None = None
) -> Iterator[dict[str, Any]]:
    """One TRL preference row per decided comparison; agreement, model names, adjudicated and campaign extra columns.

    Standard rows need a single-turn prompt; others are left out and counted in ``tally``, which
    also collects each row's comparison and the judgements that decided it.
    """
    tally = tally if tally is not None else ExportTally()
    decisions = preference_decisions(judgement_filter=judgement_filter)
    while chunk := list(itertools.islice(decisions, EXPORT_CHUNK)):
        comparisons = Comparison.objects.select_related("prompt", "completion_a", "completion_b", "campaign").in_bulk(
            [d.comparison_id for d in chunk]
        )
        for decision in chunk:
            row = _preference_row(decision, comparisons[decision.comparison_id], conversational)
            if row is None:
                tally.skipped_multi_turn += 1
                continue
            tally.comparison_ids.append(decision.comparison_id)
            tally.judgement_ids.extend(decision.judgement_ids)
            yield row


def _preference_row(decision: Decision, comparison: Comparison, conversational: bool) -> dict[str, Any] | None:
    """The row of one decided comparison; ``None`` for a multi-turn prompt in the standard format."""
    by_id = {c.id: c for c in (comparison.completion_a, comparison.completion_b)}
    chosen, rejected = by_id[decision.winner_id], by_id[decision.loser_id]  # type: ignore[index]
    prompt_messages = comparison.prompt.messages
    if conversational:
        prompt: Any = prompt_messages
        chosen_value: Any = chosen.messages
        rejected_value: Any = rejected.messages
    else:
        if len(prompt_messages) != 1:
            return None
        prompt, chosen_value, rejected_value = prompt_messages[0]["content"], chosen.text, rejected.text
    return {
        "prompt": prompt,
        "chosen": chosen_value,
        "rejected": rejected_value,
        "comparison_id": comparison.id,
        "agreement": decision.agreement,
        "num_judgements": decision.num_judgements,
        "chosen_model": chosen.model_name,
        "rejected_model": rejected.model_name,
        "adjudicated": decision.adjudicated,
        "campaign": comparison.campaign.slug,
    }
