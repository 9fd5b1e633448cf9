"""How each model version fares against its parent in evaluation rounds, and how long its answers are.

An evaluation round (``Purpose.EVALUATION``, started by ``evaluate_round``) pairs a version's completions
with its parent's on held-out prompts; its judgements are never trained on. Here they measure, per judge:
"people" (every signed-in annotator who is not an oracle) and each oracle account apart (``oracle-shorter``,
...), since two scripted preferences do not add up to one. Imported judgements are left out, as in the
ratings. Each judge's record comes with the plain win rate (decisive judgements, Wilson interval), the
length-controlled win rate (``training.win_rates``: ties left out, as in the plain rate) and the mean
length of both sides' answers: a judge that goes by length can be pleased by length alone, and the
length-controlled rate is what length alone cannot move.

Lengths are characters of the stored completion text, each completion counted once however often it was
judged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from django.db.models import Avg, Q, QuerySet
from django.db.models.functions import Length

from annotate.filters import JudgementFilter
from annotate.models import Completion, Judgement, Purpose
from annotate.selectors import JUDGEMENT_ROWS_PER_FETCH, judgements_matching
from training.oracles import ORACLE_USERNAME_PREFIX
from training.win_rates import (
    BOOTSTRAP_SAMPLES,
    MIN_VERDICTS,
    LengthControlled,
    Record,
    length_controlled_win_rate,
)

PEOPLE = "people"


@dataclass(frozen=True)
class HeadToHead:
    """One judge's evaluation judgements of a version against its parent."""

    judge: str  # PEOPLE, or an oracle's username
    record: Record  # the version's wins, losses and ties against its parent
    mean_chars: float  # the version's judged answers
    parent_mean_chars: float  # the parent's judged answers
    length_controlled: LengthControlled | None  # None: see ``uncontrolled_because``
    uncontrolled_because: str = ""  # why there is no length-controlled rate, when there is none


@dataclass
class _Tally:
    outcomes: list[float] = field(default_factory=list)  # decisive only: 1 the version won, 0 its parent did
    length_differences: list[float] = field(default_factory=list)  # version minus parent, per decisive judgement
    ties: int = 0
    both_bad: int = 0
    chars: dict[int, int] = field(default_factory=dict)  # the version's completions: id -> characters
    parent_chars: dict[int, int] = field(default_factory=dict)


def judge_of(username: str) -> str:
    return username if username.startswith(ORACLE_USERNAME_PREFIX) else PEOPLE


def _evaluation_rows(judgement_filter: JudgementFilter) -> Iterator[tuple[Any, ...]]:
    """Each evaluation judgement by a signed-in judge between two registered versions, with both sides' lengths."""
    judgements = judgements_matching(judgement_filter=replace(judgement_filter, include_evaluation=True))
    return (
        judgements.filter(
            annotator__isnull=False,
            comparison__purpose=Purpose.EVALUATION,
            left__model_version__isnull=False,
            right__model_version__isnull=False,
        )
        .annotate(left_chars=Length("left__text"), right_chars=Length("right__text"))
        .values_list(
            "annotator__username", "choice", "left_id", "right_id", "left__model_version", "right__model_version",
            "left__model_version__parent", "right__model_version__parent", "left_chars", "right_chars",
        )
        .order_by("id")
        .iterator(chunk_size=JUDGEMENT_ROWS_PER_FETCH)
    )


def _tallies(judgement_filter: JudgementFilter) -> dict[tuple[int, str], _Tally]:
    """Per (version, judge): its judgements against its parent, seen from the version."""
    tallies: dict[tuple[int, str], _Tally] = defaultdict(_Tally)
    for row in _evaluation_rows(judgement_filter):
        username, choice, left_id, right_id, left_v, right_v, left_parent, right_parent, left_n, right_n = row
        if left_parent == right_v:
            version, mine, theirs, my_chars, their_chars = left_v, left_id, right_id, left_n, right_n
        elif right_parent == left_v:
            version, mine, theirs, my_chars, their_chars = right_v, right_id, left_id, right_n, left_n
        else:
            continue  # not a version against its parent: nothing this table measures
        tally = tallies[(version, judge_of(username))]
        tally.chars[mine], tally.parent_chars[theirs] = my_chars, their_chars
        if choice in (Judgement.Choice.LEFT, Judgement.Choice.RIGHT):
            won = (choice == Judgement.Choice.LEFT) == (version == left_v)
            tally.outcomes.append(1.0 if won else 0.0)
            tally.length_differences.append(float(my_chars - their_chars))
        else:
            tally.ties += 1
            tally.both_bad += choice == Judgement.Choice.BOTH_BAD
    return tallies


def _mean(chars: dict[int, int]) -> float:
    return sum(chars.values()) / len(chars) if chars else 0.0


def evaluations_vs_parent(
    *, judgement_filter: JudgementFilter, bootstrap: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> dict[int, list[HeadToHead]]:
    """Per version id, each judge's evaluation record against the parent: people first, then oracles by name."""
    found: dict[int, list[HeadToHead]] = defaultdict(list)
    for (version, judge), tally in sorted(_tallies(judgement_filter).items(), key=lambda item: _order(*item[0])):
        wins = int(sum(tally.outcomes))
        controlled = length_controlled_win_rate(
            tally.outcomes, tally.length_differences, bootstrap=bootstrap, seed=seed
        )
        found[version].append(
            HeadToHead(
                judge=judge,
                record=Record(wins=wins, losses=len(tally.outcomes) - wins, ties=tally.ties, both_bad=tally.both_bad),
                mean_chars=_mean(tally.chars),
                parent_mean_chars=_mean(tally.parent_chars),
                length_controlled=controlled,
                uncontrolled_because="" if controlled is not None else _uncontrolled_because(tally.length_differences),
            )
        )
    return dict(found)


def _uncontrolled_because(length_differences: list[float]) -> str:
    if len(length_differences) < MIN_VERDICTS:
        return f"fewer than {MIN_VERDICTS} decisive judgements"
    side = "shorter" if max(length_differences) < 0 else "longer"
    return f"its answer was the {side} in every decisive judgement, so none shows it at equal length"


def _order(version: int, judge: str) -> tuple[int, bool, str]:
    return version, judge != PEOPLE, judge


def mean_chars_by_version(judgements: QuerySet[Judgement]) -> dict[int, float]:
    """Per version id, the mean length of its completions that ``judgements`` judged (each counted once)."""
    judged = Q(id__in=judgements.values("left_id")) | Q(id__in=judgements.values("right_id"))
    rows = (
        Completion.objects.filter(judged, model_version__isnull=False)
        .values("model_version")
        .annotate(mean=Avg(Length("text")))
        .order_by()
    )
    return {row["model_version"]: float(row["mean"]) for row in rows}
