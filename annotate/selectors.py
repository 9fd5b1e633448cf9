"""Every read of the annotation app that is more than a lookup by id."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from annotate.models import Assignment, Comparison, Completion, Judgement, Prompt

EXPORT_CHUNK = 500


@dataclass(frozen=True)
class Progress:
    judged_today: int
    judged_total: int
    remaining: int


def annotator_progress(*, annotator: User) -> Progress:
    """What the annotator has done, and how many judgements the open comparisons still want.

    ``remaining`` counts open slots over comparisons this annotator has not seen: an upper bound
    on what is left for them, since others may take some of those slots first.
    """
    start_of_day = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Judgement.objects.filter(annotator=annotator)
    seen = Assignment.objects.filter(annotator=annotator).values("comparison_id")
    remaining = (
        Comparison.objects.filter(judgement_count__lt=F("target_judgements"))
        .exclude(id__in=seen)
        .aggregate(n=Sum(F("target_judgements") - F("judgement_count")))["n"]
    )
    open_own = Assignment.objects.filter(annotator=annotator, judged_at__isnull=True, skipped_at__isnull=True).count()
    return Progress(
        judged_today=mine.filter(created_at__gte=start_of_day).count(),
        judged_total=mine.count(),
        remaining=min(remaining or 0, 1_000_000) + open_own,
    )


def assignment_for_display(*, assignment_id: int) -> Assignment:
    return Assignment.objects.select_related("comparison__prompt", "left", "right").get(id=assignment_id)


def last_judgement(*, annotator: User) -> Judgement | None:
    return Judgement.objects.filter(annotator=annotator).order_by("-id").first()


# Export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """The aggregate of one comparison's judgements: a winner, or none."""

    comparison_id: int
    winner_id: int | None
    loser_id: int | None
    agreement: float
    num_judgements: int


def decide(comparison_id: int, completion_ids: tuple[int, int], votes: Sequence[tuple[str, int | None]]) -> Decision:
    """Majority over the four outcomes (each side, tie, both bad); only a unique side wins.

    ``agreement`` is the share of judgements that voted for the winning outcome.
    """
    tally: Counter[str | int] = Counter(winner if winner is not None else choice for choice, winner in votes)
    ranked = tally.most_common()
    top_key, top_count = ranked[0]
    unique = len(ranked) == 1 or ranked[1][1] < top_count
    total = len(votes)
    if not unique or not isinstance(top_key, int):
        return Decision(comparison_id, None, None, top_count / total, total)
    loser = completion_ids[1] if top_key == completion_ids[0] else completion_ids[0]
    return Decision(comparison_id, top_key, loser, top_count / total, total)


def _judgement_filter(since: datetime | None, exclude_annotators: Iterable[str]) -> Q:
    excluded = list(exclude_annotators)
    query = Q()
    if since is not None:
        query &= Q(created_at__gte=since)
    if excluded:
        query &= ~Q(annotator__username__in=excluded) & ~Q(annotator__isnull=True, source__in=excluded)
    return query


def preference_decisions(
    *, since: datetime | None = None, exclude_annotators: Iterable[str] = (), min_agreement: float = 0.0
) -> Iterator[Decision]:
    """Decided comparisons in id order, streamed: memory does not grow with the judgement count."""
    rows = (
        Judgement.objects.filter(_judgement_filter(since, exclude_annotators))
        .order_by("comparison_id", "id")
        .values_list(
            "comparison_id", "choice", "winner_id", "comparison__completion_a_id", "comparison__completion_b_id"
        )
        .iterator(chunk_size=5000)
    )
    for comparison_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        votes = list(group)
        decision = decide(comparison_id, (votes[0][3], votes[0][4]), [(v[1], v[2]) for v in votes])
        if decision.winner_id is not None and decision.agreement >= min_agreement:
            yield decision


def preference_rows(
    *,
    conversational: bool,
    since: datetime | None = None,
    exclude_annotators: Iterable[str] = (),
    min_agreement: float = 0.0,
    skipped: Counter[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """One TRL preference row per decided comparison, with agreement and model names as extra columns.

    Standard rows need a single-turn prompt; others are counted in ``skipped["multi_turn"]``.
    """
    decisions = preference_decisions(since=since, exclude_annotators=exclude_annotators, min_agreement=min_agreement)
    while chunk := list(itertools.islice(decisions, EXPORT_CHUNK)):
        comparisons = Comparison.objects.select_related("prompt", "completion_a", "completion_b").in_bulk(
            [d.comparison_id for d in chunk]
        )
        for decision in chunk:
            comparison = comparisons[decision.comparison_id]
            by_id = {c.id: c for c in (comparison.completion_a, comparison.completion_b)}
            chosen, rejected = by_id[decision.winner_id], by_id[decision.loser_id]  # type: ignore[index]
            prompt_messages = comparison.prompt.messages
            if conversational:
                prompt: Any = prompt_messages
                chosen_value: Any = chosen.messages
                rejected_value: Any = rejected.messages
            else:
                if len(prompt_messages) != 1:
                    if skipped is not None:
                        skipped["multi_turn"] += 1
                    continue
                prompt, chosen_value, rejected_value = prompt_messages[0]["content"], chosen.text, rejected.text
            yield {
                "prompt": prompt,
                "chosen": chosen_value,
                "rejected": rejected_value,
                "comparison_id": comparison.id,
                "agreement": decision.agreement,
                "num_judgements": decision.num_judgements,
                "chosen_model": chosen.model_name,
                "rejected_model": rejected.model_name,
            }


# Staff statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorStats:
    username: str
    judgements: int
    today: int
    agreement: float | None
    agreement_pairs: int


@dataclass(frozen=True)
class AnnotationStats:
    prompts: int
    completions: int
    comparisons: int
    comparisons_open: int
    judgements_human: int
    judgements_imported: int
    choices: dict[str, int]
    agreement: float | None
    agreement_pairs: int
    annotators: list[AnnotatorStats]


def annotation_stats() -> AnnotationStats:
    """Counts, and pairwise agreement: how often two judgements of one comparison pick the same outcome.

    The outcome is the winning completion, or "tie" / "both bad"; only comparisons with two
    judgements or more count. An annotator's agreement is over the pairs they are part of
    (imported judgements count as the other side of a pair). One streamed pass over those
    judgements, so memory stays flat.
    """
    start_of_day = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    per_user = (
        Judgement.objects.filter(annotator__isnull=False)
        .values("annotator_id", "annotator__username")
        .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=start_of_day)))
        .order_by("-total", "annotator__username")
    )
    rows = (
        Judgement.objects.filter(comparison__judgement_count__gte=2)
        .order_by("comparison_id", "id")
        .values_list("comparison_id", "annotator_id", "choice", "winner_id")
        .iterator(chunk_size=5000)
    )
    agree: Counter[int | None] = Counter()
    pairs: Counter[int | None] = Counter()
    total_agree = total_pairs = 0
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        votes = [(annotator_id, winner if winner is not None else choice) for _, annotator_id, choice, winner in group]
        for i, (who_a, outcome_a) in enumerate(votes):
            for who_b, outcome_b in votes[i + 1 :]:
                same = int(outcome_a == outcome_b)
                total_pairs += 1
                total_agree += same
                for who in (who_a, who_b):
                    pairs[who] += 1
                    agree[who] += same
    annotators = [
        AnnotatorStats(
            username=row["annotator__username"],
            judgements=row["total"],
            today=row["today"],
            agreement=agree[row["annotator_id"]] / pairs[row["annotator_id"]] if pairs[row["annotator_id"]] else None,
            agreement_pairs=pairs[row["annotator_id"]],
        )
        for row in per_user
    ]
    choices = dict(Judgement.objects.values_list("choice").annotate(n=Count("id")).order_by("choice"))
    return AnnotationStats(
        prompts=Prompt.objects.count(),
        completions=Completion.objects.count(),
        comparisons=Comparison.objects.count(),
        comparisons_open=Comparison.objects.filter(judgement_count__lt=F("target_judgements")).count(),
        judgements_human=Judgement.objects.filter(annotator__isnull=False).count(),
        judgements_imported=Judgement.objects.filter(annotator__isnull=True).count(),
        choices={label: choices.get(value, 0) for value, label in Judgement.Choice.choices},
        agreement=total_agree / total_pairs if total_pairs else None,
        agreement_pairs=total_pairs,
        annotators=annotators,
    )
