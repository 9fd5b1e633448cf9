"""How far annotators agree: Krippendorff's alpha over comparisons, and each annotator's reliability.

Pure functions over reliability data (which value each annotator gave each comparison); the query
that gathers it is ``annotate.selectors.annotator_reliability``. No Django here.

A comparison is a unit and a judgement one value of it. Sides are mapped to the comparison's
completions, so the left/right order an annotator saw does not matter:

- nominal: which completion won (``a`` or ``b``), ``tie``, or ``both_bad``;
- ordinal: the signed strength, +3 (a much better) through 0 (tie) to -3 (b much better). "Both
  bad" says nothing about which is better, and a side picked without a strength cannot be placed
  on the scale: both are missing for the ordinal alpha.

alpha is computed from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
Alpha-Reliability"), the same way as the ``krippendorff`` package (a test holds them equal),
so that the bootstrap can resample comparisons by weighting per-comparison coincidences instead
of recounting the data a thousand times.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Literal, Protocol, TypeVar

import numpy as np

Level = Literal["nominal", "ordinal"]

NOMINAL_VALUES: tuple[str, ...] = ("a", "b", "tie", "both_bad")
STRENGTH_STEPS = {"slightly": 1, "clearly": 2, "much": 3}
ORDINAL_VALUES: tuple[int, ...] = tuple(range(-3, 4))
VALUES: dict[Level, tuple[Hashable, ...]] = {"nominal": NOMINAL_VALUES, "ordinal": ORDINAL_VALUES}

# Resamples of comparisons for alpha's 95% percentile interval: at 1,000 an end moves between seeds by
# 0.006 (standard deviation) over 80 comparisons and 0.001 over 1,000, finer than anyone reads alpha
# (measured 2026-12-02, 30 seeds); the seed is fixed so that a reload shows the same interval.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20261202
_Z95 = 1.959963984540054


def nominal_value(*, choice: str, winner_id: int | None, completion_a_id: int) -> str:
    """A judgement's outcome with its sides mapped to the comparison's completions."""
    if winner_id is None:
        return choice
    return "a" if winner_id == completion_a_id else "b"


def ordinal_value(*, choice: str, strength: str, winner_id: int | None, completion_a_id: int) -> int | None:
    """A judgement on the signed strength scale (positive: completion a better); None where it has no place."""
    if choice == "tie":
        return 0
    if winner_id is None or strength not in STRENGTH_STEPS:
        return None
    step = STRENGTH_STEPS[strength]
    return step if winner_id == completion_a_id else -step


def value_counts(units: Iterable[Sequence[Hashable | None]], *, level: Level) -> np.ndarray:
    """Per comparison, how many judgements gave each value of ``level`` (missing values dropped)."""
    index = {value: i for i, value in enumerate(VALUES[level])}
    rows = [np.bincount([index[v] for v in unit if v is not None], minlength=len(index)) for unit in units]
    return np.array(rows, dtype=float).reshape(len(rows), len(index))


def _unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """Each pairable comparison's coincidence matrix, flattened: (comparisons, values²)."""
    pairable = counts[counts.sum(axis=1) >= 2]
    m = pairable.sum(axis=1)
    pairs = pairable[:, :, None] * pairable[:, None, :]
    values = counts.shape[1]
    pairs[:, np.arange(values), np.arange(values)] -= pairable
    return (pairs / (m - 1)[:, None, None]).reshape(len(pairable), values * values)


def _distances(n_v: np.ndarray, level: Level) -> np.ndarray:
    """Squared distances between every two values, per row of value totals: (..., values) to (..., values, values)."""
    values = n_v.shape[-1]
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(values), (*n_v.shape[:-1], values, values))
    low = np.minimum.outer(np.arange(values), np.arange(values))
    high = np.maximum.outer(np.arange(values), np.arange(values))
    through = np.cumsum(n_v, axis=-1)
    between = through[..., high] - through[..., low] + n_v[..., low]
    return (between - (n_v[..., low] + n_v[..., high]) / 2) ** 2


def _alphas(coincidences: np.ndarray, level: Level) -> np.ndarray:
    """alpha for each row of flattened coincidence matrices; NaN where it is undefined (no variation)."""
    values = math.isqrt(coincidences.shape[-1])
    o = coincidences.reshape(*coincidences.shape[:-1], values, values)
    n_v = o.sum(axis=-1)
    n = n_v.sum(axis=-1)
    d = _distances(n_v, level)
    observed = (o * d).sum(axis=(-2, -1))
    expected = (n_v[..., :, None] * n_v[..., None, :] * d).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1.0 - (n - 1) * observed / expected, np.nan)


def alpha(counts: np.ndarray, *, level: Level) -> float | None:
    """Krippendorff's alpha of per-comparison value counts; None without two differing pairable values."""
    result = float(_alphas(_unit_coincidences(counts).sum(axis=0), level))
    return None if math.isnan(result) else result


def alpha_interval(
    counts: np.ndarray, *, level: Level, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of alpha, resampling the pairable comparisons with replacement.

    Comparisons with the same value counts add the same coincidences, so a resample is drawn as
    how many comparisons of each distinct pattern it holds: a multinomial over the few patterns,
    the same distribution as drawing comparisons one by one, at a cost that does not grow with them.
    """
    pairable = counts[counts.sum(axis=1) >= 2]
    if len(pairable) == 0:
        return None
    patterns, frequency = np.unique(pairable, axis=0, return_counts=True)
    weights = np.random.default_rng(seed).multinomial(len(pairable), frequency / len(pairable), size=resamples)
    alphas = _alphas(weights @ _unit_coincidences(patterns), level)
    defined = alphas[~np.isnan(alphas)]
    if len(defined) == 0:
        return None
    low, high = np.percentile(defined, [2.5, 97.5])
    return float(low), float(high)


def cohen_kappa(pairs: Iterable[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of paired labels; None without pairs, or when chance alone would agree every time."""
    pairs = list(pairs)
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    chance = sum(first[label] * second[label] for label in first) / (n * n)
    if chance == 1:
        return None
    return (observed - chance) / (1 - chance)


def wilson_interval(successes: float, trials: int) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion (sensible near 0 and 1 and for small counts)."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + _Z95**2 / trials
    centre = (p + _Z95**2 / (2 * trials)) / denominator
    half = _Z95 * math.sqrt(p * (1 - p) / trials + _Z95**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


# Per annotator ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vote:
    """One judgement of a comparison, as the statistics see it."""

    annotator: str
    nominal: str
    ordinal: int | None
    # The side order the annotator saw: "left", "right", "tie" or "both_bad".
    choice: str
    # From the card's lease to the vote, on the server's clock; None when no lease is known.
    seconds: float | None = None


def card_shown_at(leased_at: datetime, undone_at: datetime | None) -> datetime:
    """When a card was shown: at its lease, or at the later undo that handed it back to the annotator.

    ``annotate.selectors.timing`` is the same rule as a query expression.
    """
    return max(leased_at, undone_at) if undone_at is not None else leased_at


def vote_of(
    username: str,
    choice: str,
    strength: str,
    winner_id: int | None,
    completion_a_id: int,
    voted_at: datetime,
    leased_at: datetime | None,
    undone_at: datetime | None,
) -> Vote:
    """A judgement's row as a ``Vote``; its card was shown at the lease, or at the undo that handed it back."""
    shown_at = card_shown_at(leased_at, undone_at) if leased_at is not None else None
    return Vote(
        annotator=username,
        nominal=nominal_value(choice=choice, winner_id=winner_id, completion_a_id=completion_a_id),
        ordinal=ordinal_value(choice=choice, strength=strength, winner_id=winner_id, completion_a_id=completion_a_id),
        choice=choice,
        seconds=(voted_at - shown_at).total_seconds() if shown_at is not None else None,
    )


@dataclass(frozen=True)
class AnnotatorReliability:
    username: str
    judgements: int
    # Of the pairs this annotator's judgements make with others' on the same comparison, the share alike.
    agreement: float | None
    # Against the unique majority outcome of the others, on the comparisons that have one.
    kappa: float | None
    # Left picks among side picks (ties and "both bad" say nothing about position).
    left_share: float | None
    left_share_interval: tuple[float, float] | None
    median_seconds: float | None
    rushed: int

    def csv_row(self) -> list[object]:
        low, high = self.left_share_interval or (None, None)
        values = [getattr(self, name) for name in SORT_COLUMNS]
        return [*values[:5], low, high, *values[5:]]


SORT_COLUMNS = tuple(f.name for f in fields(AnnotatorReliability) if f.name != "left_share_interval")
CSV_HEADER = [*SORT_COLUMNS[:5], "left_share_low", "left_share_high", *SORT_COLUMNS[5:]]
DEFAULT_SORT = "-judgements"


class _Named(Protocol):
    @property
    def username(self) -> str: ...


Row = TypeVar("Row", bound=_Named)


def annotators_sorted(rows: Iterable[Row], sort: str, *, columns: Sequence[str] = SORT_COLUMNS) -> list[Row]:
    """By ``sort`` (one of ``columns``, "-" first for descending; anything else is ``DEFAULT_SORT``), blanks last."""
    column = sort.removeprefix("-")
    if column not in columns:
        return annotators_sorted(rows, DEFAULT_SORT, columns=columns)
    by_name = sorted(rows, key=lambda row: row.username)
    present = [row for row in by_name if getattr(row, column) is not None]
    present.sort(key=lambda row: getattr(row, column), reverse=sort.startswith("-"))
    return present + [row for row in by_name if getattr(row, column) is None]


@dataclass(frozen=True)
class Alpha:
    nominal: float | None
    ordinal: float | None
    nominal_interval: tuple[float, float] | None
    ordinal_interval: tuple[float, float] | None


@dataclass(frozen=True)
class Reliability:
    alpha: Alpha
    annotators: list[AnnotatorReliability]


@dataclass
class _Person:
    judgements: int = 0
    alike: int = 0
    pairs: int = 0
    against_majority: list[tuple[str, str]] = field(default_factory=list)
    left: int = 0
    sides: int = 0
    seconds: list[float] = field(default_factory=list)


def _majority(outcomes: Sequence[str]) -> str | None:
    ranked = Counter(outcomes).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0]


class ReliabilityTally:
    """Takes one comparison's votes at a time, so a streamed query needs no list of every judgement."""

    def __init__(self) -> None:
        self._units: list[Sequence[Vote]] = []
        self._people: defaultdict[str, _Person] = defaultdict(_Person)

    def add(self, votes: Sequence[Vote]) -> None:
        if len(votes) >= 2:
            self._units.append(votes)
        for i, vote in enumerate(votes):
            person = self._people[vote.annotator]
            others = [other.nominal for j, other in enumerate(votes) if j != i]
            person.judgements += 1
            person.pairs += len(others)
            person.alike += others.count(vote.nominal)
            if (majority := _majority(others)) is not None:
                person.against_majority.append((vote.nominal, majority))
            if vote.choice in ("left", "right"):
                person.sides += 1
                person.left += vote.choice == "left"
            if vote.seconds is not None:
                person.seconds.append(vote.seconds)

    def result(self, *, rushed_seconds: float, sort: str = DEFAULT_SORT) -> Reliability:
        nominal = value_counts(([v.nominal for v in unit] for unit in self._units), level="nominal")
        ordinal = value_counts(([v.ordinal for v in unit] for unit in self._units), level="ordinal")
        rows = [
            AnnotatorReliability(
                username=username,
                judgements=person.judgements,
                agreement=person.alike / person.pairs if person.pairs else None,
                kappa=cohen_kappa(person.against_majority),
                left_share=person.left / person.sides if person.sides else None,
                left_share_interval=wilson_interval(person.left, person.sides),
                median_seconds=statistics.median(person.seconds) if person.seconds else None,
                rushed=sum(seconds < rushed_seconds for seconds in person.seconds),
            )
            for username, person in self._people.items()
        ]
        return Reliability(
            alpha=Alpha(
                nominal=alpha(nominal, level="nominal"),
                ordinal=alpha(ordinal, level="ordinal"),
                nominal_interval=alpha_interval(nominal, level="nominal"),
                ordinal_interval=alpha_interval(ordinal, level="ordinal"),
            ),
            annotators=annotators_sorted(rows, sort),
        )
