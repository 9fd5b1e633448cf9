"""The model-version leaderboard: Bradley-Terry strengths from people's judgements, on an Elo-like scale.

Which judgements count: those recorded by a signed-in annotator (imported judgements are left out), on a
comparison whose two completions come from two *different* registered model versions
(``Completion.model_name`` equal to a ``ModelVersion.name``). A tie counts as half a win each way, and so
does "both bad": neither answer was preferred.

The fit is Bradley-Terry, P(i beats j) = sigmoid(theta_i - theta_j), solved by Newton's method on the
log-likelihood plus a weak Gaussian prior theta ~ N(0, s^2) with s = 400 rating points: without it a version
that won every judgement would get an infinite rating; with a few hundred judgements per version its pull is
negligible. Ratings are theta * 400 / ln 10 (Elo's scale: +400 points are 10:1 odds), shifted so that the
anchor, the default version, sits at 1000 (the most-judged version when the default has no judgements). Only
versions linked to the anchor through judged pairs are rated; how the others compare with it is not
identified by the data.

Uncertainty is a percentile bootstrap: the judgements are resampled with replacement (``bootstrap`` times,
seeded) and refitted. The anchor is pinned at 1000 in every resample, so its interval has no width and the
others' intervals are differences from it. Judgements are aggregated per (pair, outcome) in SQL, and a
resample of N judgements is a multinomial draw over those categories, so 100k judgements cost no more
than 100.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count, F

from annotate.models import Judgement
from training.models import ModelVersion

ANCHOR_RATING = 1000.0
ELO_PER_NAT = 400.0 / math.log(10.0)
PRIOR_SD_POINTS = 400.0
BOOTSTRAP_SAMPLES = 200
TIES_NOTE = "a tie counts as half a win each way; 'both bad' counts as a tie"
_Z95 = 1.959963984540054


def wilson_interval(successes: float, trials: int) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion (sensible near 0 and 1 and for small counts)."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + _Z95**2 / trials
    centre = (p + _Z95**2 / (2 * trials)) / denominator
    half = _Z95 * math.sqrt(p * (1 - p) / trials + _Z95**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Record:
    """Wins, losses and ties of one side; ``ties`` includes the ``both_bad`` judgements."""

    wins: int = 0
    losses: int = 0
    ties: int = 0
    both_bad: int = 0

    @property
    def judgements(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def decisive(self) -> int:
        return self.wins + self.losses

    @property
    def win_rate(self) -> float | None:
        """Share of the decisive judgements that this side won (ties are shown apart, not counted)."""
        return self.wins / self.decisive if self.decisive else None

    @property
    def win_rate_ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.wins, self.decisive)


@dataclass(frozen=True)
class Standing:
    """One model version's row on the leaderboard."""

    version_id: int
    name: str
    parent_name: str | None
    is_default: bool
    is_anchor: bool
    rank: int | None  # 1 = strongest; None when not rated
    rating: float | None  # None: no judgements, or not linked to the anchor through judged pairs
    ci_low: float | None
    ci_high: float | None
    record: Record  # against every other version
    vs_parent: Record | None  # None for a version without a parent

    @property
    def rated(self) -> bool:
        return self.rating is not None


@dataclass(frozen=True)
class PositionBias:
    """How often the LEFT side won among the decisive human judgements (0.5 = no bias)."""

    left_wins: int
    decisive: int

    @property
    def rate(self) -> float | None:
        return self.left_wins / self.decisive if self.decisive else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.left_wins, self.decisive)


@dataclass(frozen=True)
class Leaderboard:
    standings: list[Standing]  # rated versions by rating, strongest first, then the unrated in id order
    judgements: int  # human judgements between two different registered versions
    rated_judgements: int  # those the ratings use: between versions linked to the anchor
    anchor: str | None  # the version pinned at ``anchor_rating``; None when nothing is rated
    position_bias: PositionBias  # over every decisive human judgement, on any comparison
    bootstrap_samples: int
    anchor_rating: float = ANCHOR_RATING
    ties_note: str = TIES_NOTE
    excluded_annotators: list[str] = field(default_factory=list)


# The fit --------------------------------------------------------------------------------


def _objective(theta: np.ndarray, wins: np.ndarray, precision: float) -> float:
    diff = theta[:, None] - theta[None, :]
    # log sigmoid(d) = -log(1 + e^{-d}), computed stably.
    return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * precision * (theta @ theta))


def bradley_terry(wins: np.ndarray, *, prior_sd: float = PRIOR_SD_POINTS / ELO_PER_NAT) -> np.ndarray:
    """Strengths theta (log-odds units) maximising the Bradley-Terry log-likelihood plus a N(0, prior_sd^2) prior.

    ``wins[i, j]`` is how often i beat j, ties already counted as half a win each way (so it may be fractional).
    The objective is strictly concave, so Newton's method with step halving converges in a handful of steps.
    """
    k = wins.shape[0]
    games = wins + wins.T
    precision = 1.0 / prior_sd**2
    theta = np.zeros(k)
    value = _objective(theta, wins, precision)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        gradient = wins.sum(axis=1) - (games * p).sum(axis=1) - precision * theta
        weight = games * p * (1.0 - p)
        information = np.diag(weight.sum(axis=1)) - weight + precision * np.eye(k)
        step = np.linalg.solve(information, gradient)
        scale = 1.0
        while True:
            candidate = theta + scale * step
            candidate_value = _objective(candidate, wins, precision)
            if candidate_value >= value - 1e-12 or scale < 1e-6:
                break
            scale /= 2
        theta, value = candidate, candidate_value
        if np.max(np.abs(scale * step)) < 1e-9:
            break
    return theta


@dataclass(frozen=True)
class Outcomes:
    """Judgements aggregated per category: the pair (i, j) and how often i won, j won, or it was a tie."""

    i: np.ndarray
    j: np.ndarray
    i_wins: np.ndarray
    j_wins: np.ndarray
    ties: np.ndarray

    @property
    def total(self) -> int:
        return int(self.i_wins.sum() + self.j_wins.sum() + self.ties.sum())

    def wins_matrix(self, k: int, counts: np.ndarray | None = None) -> np.ndarray:
        """``wins[i, j]`` from the categories' counts (``counts`` = a resample, laid out as i-wins | j-wins | ties)."""
        n = len(self.i)
        if counts is None:
            i_wins, j_wins, ties = self.i_wins, self.j_wins, self.ties
        else:
            i_wins, j_wins, ties = counts[:n], counts[n : 2 * n], counts[2 * n :]
        wins = np.zeros((k, k))
        np.add.at(wins, (self.i, self.j), i_wins + 0.5 * ties)
        np.add.at(wins, (self.j, self.i), j_wins + 0.5 * ties)
        return wins


def _ratings(theta: np.ndarray, anchor: int) -> np.ndarray:
    return ANCHOR_RATING + ELO_PER_NAT * (theta - theta[anchor])


def rate(
    outcomes: Outcomes, k: int, anchor: int, *, bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratings of k versions with the anchor at 1000, and their bootstrap 2.5% and 97.5% percentiles."""
    point = _ratings(bradley_terry(outcomes.wins_matrix(k)), anchor)
    if bootstrap <= 0:
        return point, point.copy(), point.copy()
    counts = np.concatenate([outcomes.i_wins, outcomes.j_wins, outcomes.ties]).astype(float)
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    samples = np.empty((bootstrap, k))
    for b in range(bootstrap):
        resample = rng.multinomial(total, counts / total).astype(float)
        samples[b] = _ratings(bradley_terry(outcomes.wins_matrix(k, resample)), anchor)
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    return point, low, high


def _component(start: int, edges: Iterable[tuple[int, int]]) -> set[int]:
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    seen, queue = {start}, deque([start])
    while queue:
        for other in neighbours.get(queue.popleft(), ()):
            if other not in seen:
                seen.add(other)
                queue.append(other)
    return seen


# The selector ---------------------------------------------------------------------------


def _human_judgements(exclude_annotators: Sequence[str]):  # type: ignore[no-untyped-def]
    judgements = Judgement.objects.filter(annotator__isnull=False)
    if exclude_annotators:
        judgements = judgements.exclude(annotator__username__in=list(exclude_annotators))
    return judgements


def leaderboard(
    *, exclude_annotators: Sequence[str] = (), bootstrap: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> Leaderboard:
    """Rate every registered model version from the human judgements between two of them (see the module doc)."""
    versions = list(ModelVersion.objects.select_related("parent").order_by("id"))
    index = {v.name: n for n, v in enumerate(versions)}
    judgements = _human_judgements(exclude_annotators)

    # (left version, right version, choice) -> count; left/right are normalised to i < j below.
    grouped = (
        judgements.filter(left__model_name__in=list(index), right__model_name__in=list(index))
        .exclude(left__model_name=F("right__model_name"))
        .values_list("left__model_name", "right__model_name", "choice")
        .annotate(n=Count("id"))
        .order_by()
    )
    # per unordered pair (i < j): [i wins, j wins, ties, both bad]
    pairs: dict[tuple[int, int], list[int]] = {}
    for left_name, right_name, choice, n in grouped:
        left, right = index[left_name], index[right_name]
        i, j = min(left, right), max(left, right)
        cell = pairs.setdefault((i, j), [0, 0, 0, 0])
        if choice == Judgement.Choice.LEFT:
            cell[0 if left == i else 1] += n
        elif choice == Judgement.Choice.RIGHT:
            cell[0 if right == i else 1] += n
        else:
            cell[2] += n
            if choice == Judgement.Choice.BOTH_BAD:
                cell[3] += n

    records = [[0, 0, 0, 0] for _ in versions]
    for (i, j), (i_wins, j_wins, ties, both_bad) in pairs.items():
        records[i] = [records[i][0] + i_wins, records[i][1] + j_wins, records[i][2] + ties, records[i][3] + both_bad]
        records[j] = [records[j][0] + j_wins, records[j][1] + i_wins, records[j][2] + ties, records[j][3] + both_bad]

    judged = [n for n, r in enumerate(records) if r[0] + r[1] + r[2] > 0]
    default = next((n for n, v in enumerate(versions) if v.is_default), None)
    anchor: int | None = None
    if judged:
        anchor = default if default in judged else max(judged, key=lambda n: (sum(records[n][:3]), -n))
    ratings: dict[int, tuple[float, float, float]] = {}
    used = 0
    if anchor is not None:
        members = sorted(_component(anchor, pairs))
        local = {n: m for m, n in enumerate(members)}
        inside = [(i, j, c) for (i, j), c in pairs.items() if i in local and j in local]
        outcomes = Outcomes(
            i=np.array([local[i] for i, _, _ in inside], dtype=int),
            j=np.array([local[j] for _, j, _ in inside], dtype=int),
            i_wins=np.array([c[0] for _, _, c in inside], dtype=float),
            j_wins=np.array([c[1] for _, _, c in inside], dtype=float),
            ties=np.array([c[2] for _, _, c in inside], dtype=float),
        )
        used = outcomes.total
        point, low, high = rate(outcomes, len(members), local[anchor], bootstrap=bootstrap, seed=seed)
        ratings = {n: (float(point[m]), float(low[m]), float(high[m])) for n, m in local.items()}

    order = sorted(ratings, key=lambda n: (-ratings[n][0], n))
    rank = {n: position + 1 for position, n in enumerate(order)}
    standings = []
    for n in order + [n for n in range(len(versions)) if n not in ratings]:
        version = versions[n]
        parent = index.get(version.parent.name) if version.parent is not None else None
        vs_parent = None
        if parent is not None:
            i, j = min(n, parent), max(n, parent)
            i_wins, j_wins, ties, both_bad = pairs.get((i, j), [0, 0, 0, 0])
            mine, theirs = (i_wins, j_wins) if n == i else (j_wins, i_wins)
            vs_parent = Record(wins=mine, losses=theirs, ties=ties, both_bad=both_bad)
        rating, ci_low, ci_high = ratings.get(n, (None, None, None))
        standings.append(
            Standing(
                version_id=version.pk,
                name=version.name,
                parent_name=version.parent.name if version.parent is not None else None,
                is_default=version.is_default,
                is_anchor=n == anchor,
                rank=rank.get(n),
                rating=rating,
                ci_low=ci_low,
                ci_high=ci_high,
                record=Record(*records[n]),
                vs_parent=vs_parent,
            )
        )

    sides = dict(
        judgements.filter(choice__in=[Judgement.Choice.LEFT, Judgement.Choice.RIGHT])
        .values_list("choice")
        .annotate(n=Count("id"))
        .order_by()
    )
    left_wins = sides.get(Judgement.Choice.LEFT, 0)
    return Leaderboard(
        standings=standings,
        judgements=sum(sum(c[:3]) for c in pairs.values()),
        rated_judgements=used,
        anchor=versions[anchor].name if anchor is not None else None,
        position_bias=PositionBias(left_wins=left_wins, decisive=left_wins + sides.get(Judgement.Choice.RIGHT, 0)),
        bootstrap_samples=bootstrap,
        excluded_annotators=list(exclude_annotators),
    )
