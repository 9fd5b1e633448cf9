"""Every read of the annotation app that is more than a lookup by id."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from annotate.agreement import (
    DEFAULT_SORT,
    Reliability,
    ReliabilityTally,
    vote_of,
)
from annotate.filters import EVERY_JUDGEMENT, JudgementFilter
from annotate.models import (
    ApiToken,
    Assignment,
    AuditEntry,
    Comparison,
    Completion,
    ExportJob,
    Judgement,
    LoginFailure,
    Outcome,
    Prompt,
    Purpose,
)

# Decided comparisons loaded per query with their prompt and both completions: one query per
# 500 rows, memory bounded by 500 comparisons' texts, and the IN list under the 999 parameters
# an older SQLite takes.
EXPORT_CHUNK = 500
# Judgement rows per fetch when streaming (a server-side cursor's batch on PostgreSQL): each row
# is a few ids, so 5,000 of them cost well under a megabyte and few round trips.
JUDGEMENT_ROWS_PER_FETCH = 5000


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


def last_judgement(*, annotator: User) -> Judgement | None:
    return Judgement.objects.filter(annotator=annotator).order_by("-id").first()


# Export ---------------------------------------------------------------------------------


def judgements_matching(*, judgement_filter: JudgementFilter) -> QuerySet[Judgement]:
    """The judgements ``judgement_filter`` keeps; its ``min_agreement`` applies per comparison, later.

    A source is left out only for imported judgements: a person's judgement has the source
    "human", which no import file is named. Judgements on evaluation comparisons are left out
    unless the filter includes them: this is where "evaluation is never trained on" holds, for the
    export, a training run's frozen dataset and the API alike.
    """
    judgements = Judgement.objects.all()
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
    """One TRL preference row per decided comparison, with agreement and model names as extra columns.

    Standard rows need a single-turn prompt; others are left out and counted in ``tally``, which
    also collects each row's comparison and the judgements that decided it.
    """
    tally = tally if tally is not None else ExportTally()
    decisions = preference_decisions(judgement_filter=judgement_filter)
    while chunk := list(itertools.islice(decisions, EXPORT_CHUNK)):
        comparisons = Comparison.objects.select_related("prompt", "completion_a", "completion_b").in_bulk(
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
        .iterator(chunk_size=JUDGEMENT_ROWS_PER_FETCH)
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


def prompts_tagged(*, tag: str, limit: int | None = None) -> list[Prompt]:
    """The prompts tagged ``tag``, oldest first, at most ``limit`` of them."""
    # JSON containment is not portable to SQLite, and tags are short lists: filter here.
    chosen = [p for p in Prompt.objects.order_by("id") if tag in (p.tags or [])]
    return chosen[:limit] if limit is not None else chosen


# Adjudication -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitComparison:
    """A comparison whose judgements pick more than one outcome; ``agreement`` is the largest outcome's share."""

    comparison_id: int
    agreement: float
    num_judgements: int


def comparisons_split() -> list[SplitComparison]:
    """Comparisons judged twice or more without one outcome for all, lowest agreement first (then oldest).

    An outcome is a completion, a tie or both bad, so two annotators who saw the pair in opposite
    side orders and chose the same completion agree. One streamed pass over the judgements of
    comparisons judged twice or more; memory holds one small record per split comparison.
    """
    judged_twice = (
        Judgement.objects.values("comparison_id").annotate(n=Count("id")).filter(n__gte=2).values("comparison_id")
    )
    rows = (
        Judgement.objects.filter(comparison_id__in=judged_twice)
        .order_by("comparison_id")
        .values_list("comparison_id", "choice", "winner_id")
        .iterator(chunk_size=JUDGEMENT_ROWS_PER_FETCH)
    )
    splits = []
    for comparison_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        tally = Counter(winner if winner is not None else choice for _, choice, winner in group)
        total = sum(tally.values())
        if len(tally) > 1:
            splits.append(SplitComparison(comparison_id, max(tally.values()) / total, total))
    return sorted(splits, key=lambda split: (split.agreement, split.comparison_id))


@dataclass(frozen=True)
class Vote:
    """One judgement as an adjudicator reads it: by whom, for which completion, and how long they looked."""

    judge: str
    outcome: str
    strength: str
    reason: str
    seconds_on_card: int | None
    created_at: datetime

    @property
    def outcome_label(self) -> str:
        return Outcome(self.outcome).label


@dataclass(frozen=True)
class SplitCase:
    comparison: Comparison
    agreement: float
    votes: list[Vote]


def split_cases(*, splits: Iterable[SplitComparison]) -> list[SplitCase]:
    """The comparisons of ``splits`` with their texts and every vote, in the same order (three queries).

    Time on card runs from the lease to the vote, read from the annotator's assignment; an imported
    judgement has none, and neither does a vote whose assignment is gone.
    """
    splits = list(splits)
    ids = [split.comparison_id for split in splits]
    comparisons = Comparison.objects.select_related(
        "prompt", "completion_a", "completion_b", "adjudicated_by"
    ).in_bulk(ids)
    leases: dict[tuple[int, int | None], Assignment] = {
        (a.comparison_id, a.annotator_id): a
        for a in Assignment.objects.filter(comparison_id__in=ids, judged_at__isnull=False)
    }
    votes: dict[int, list[Vote]] = {i: [] for i in ids}
    for judgement in Judgement.objects.filter(comparison_id__in=ids).select_related("annotator").order_by("id"):
        comparison = comparisons[judgement.comparison_id]
        lease = leases.get((judgement.comparison_id, judgement.annotator_id))
        votes[judgement.comparison_id].append(
            Vote(
                judge=judgement.annotator.username if judgement.annotator else judgement.source,
                outcome=_outcome(judgement, comparison),
                strength=judgement.get_strength_display() if judgement.strength else "",
                reason=judgement.reason,
                seconds_on_card=(
                    int((lease.judged_at - lease.created_at).total_seconds()) if lease and lease.judged_at else None
                ),
                created_at=judgement.created_at,
            )
        )
    return [SplitCase(comparisons[s.comparison_id], s.agreement, votes[s.comparison_id]) for s in splits]


def _outcome(judgement: Judgement, comparison: Comparison) -> str:
    if judgement.winner_id == comparison.completion_a_id:
        return Outcome.A
    if judgement.winner_id == comparison.completion_b_id:
        return Outcome.B
    return judgement.choice


# Accounts, tokens and the audit log --------------------------------------------------------


def api_tokens_of(*, user: User) -> QuerySet[ApiToken]:
    """A user's tokens, newest first (their prefixes and expiry; the tokens themselves are not kept)."""
    return ApiToken.objects.filter(user=user)


def audit_entries() -> QuerySet[AuditEntry]:
    """The audit log, newest first."""
    return AuditEntry.objects.all()


def login_retry_after(*, username: str, ip: str | None) -> int | None:
    """Seconds until a sign-in as ``username`` from ``ip`` may be tried again; ``None`` when it may now.

    Each limit is reached when that many failures fall within the window, and lifts when the
    oldest of the most recent ``limit`` failures leaves it.
    """
    now = timezone.now()
    window = timedelta(seconds=settings.DUET_LOGIN_WINDOW_SECONDS)
    recent = LoginFailure.objects.filter(created_at__gte=now - window).order_by("-created_at")
    waits: list[int] = []
    for failures, limit in (
        (recent.filter(username=username), settings.DUET_LOGIN_FAILURES_PER_USER),
        (recent.filter(ip=ip) if ip else recent.none(), settings.DUET_LOGIN_FAILURES_PER_IP),
    ):
        limiting = failures.values_list("created_at", flat=True)[limit - 1 : limit]
        waits.extend(max(1, int((at + window - now).total_seconds()) + 1) for at in limiting)
    return max(waits) if waits else None


# Agreement and annotator reliability -------------------------------------------------------


def annotator_reliability(
    *, judgement_filter: JudgementFilter = EVERY_JUDGEMENT, sort: str = DEFAULT_SORT
) -> Reliability:
    """Krippendorff's alpha over the people's judgements ``judgement_filter`` keeps, and each person's figures.

    A judgement's time on its card runs from the lease (the assignment's creation, or the undo that
    handed the card back) to the vote, both on the server's clock. One streamed query, grouped
    by comparison; the formulas are ``annotate.agreement``'s.
    """
    lease = Assignment.objects.filter(comparison_id=OuterRef("comparison_id"), annotator_id=OuterRef("annotator_id"))
    rows = (
        judgements_matching(judgement_filter=judgement_filter)
        .filter(annotator__isnull=False)
        .annotate(leased_at=Subquery(lease.values("created_at")[:1]), undone_at=Subquery(lease.values("undone_at")[:1]))
        .order_by("comparison_id", "id")
        .values_list(
            "comparison_id",
            "annotator__username",
            "choice",
            "strength",
            "winner_id",
            "comparison__completion_a_id",
            "created_at",
            "leased_at",
            "undone_at",
        )
        .iterator(chunk_size=JUDGEMENT_ROWS_PER_FETCH)
    )
    tally = ReliabilityTally()
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        tally.add([vote_of(*row[1:]) for row in group])
    return tally.result(rushed_seconds=settings.DUET_RUSHED_SECONDS, sort=sort)

