"""Win rates and their uncertainty: the plain rate with a Wilson interval, and the length-controlled rate.

Pure numpy, no Django: the leaderboard, the evaluation head-to-heads and ``simulate_round`` share it.

The length-controlled win rate follows AlpacaEval 2 (Dubois et al., 2024): a judge that likes longer
(or shorter) answers rewards a model for its length, so the plain win rate can be raised by changing
length alone. Each decisive verdict is an outcome y (1: the candidate won, 0: the other side won;
ties and "both bad" are left out, as in the plain rate, so the two are comparable) and a length
feature x = tanh(d / sd(d)), where d is the candidate's length minus the other side's in characters.
A logistic regression P(win) = sigmoid(a + b x) then separates the part of winning that moves with
length (b) from the rest, and sigmoid(a), the predicted win rate at equal length, is the
length-controlled win rate. tanh bounds the pull of a few extreme length gaps; dividing by the
standard deviation makes b comparable across judges and rounds.

The rate is read at equal length, so equal length must lie within the data: with the candidate shorter in
every verdict (a model trained on a "shorter" judge), nothing says how it fares when it is not, and the
intercept would be the prior's guess. The rate is then not given (None), nor below MIN_VERDICTS verdicts.

Both coefficients carry a weak Gaussian prior N(0, PRIOR_SD^2): when the shorter answer always wins,
the data separate perfectly and the unpenalised fit would send b to minus infinity; when the
candidate wins everything, a would go to infinity. The prior keeps both finite and, with a few dozen
verdicts, barely moves the estimate otherwise. The interval is a percentile bootstrap over verdicts
(seeded), each resample refitted; all resamples are fitted at once as a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# One home for the interval, shared with the annotator statistics; re-exported for the leaderboard and oracles.
from annotate.agreement import wilson_interval as wilson_interval

BOOTSTRAP_SAMPLES = 200
# Two coefficients from fewer verdicts are mostly noise, and a bootstrap resample of so few often lacks one
# outcome or one side of equal length, which makes the interval look far surer than the data are.
MIN_VERDICTS = 10
# In log-odds units: sigmoid(+-2 * 5) spans 0.00005 to 0.99995, so it only rules out certainty.
PRIOR_SD = 5.0


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
class LengthControlled:
    """The win rate at equal length, its 95% bootstrap interval, and the length coefficient b."""

    win_rate: float
    ci_low: float
    ci_high: float
    length_slope: float  # b: > 0 when the judge favours the longer answer, < 0 the shorter
    verdicts: int  # decisive verdicts the fit used


def length_feature(length_differences: Sequence[float] | np.ndarray) -> np.ndarray:
    """x = tanh(d / sd(d)); all zeros when the differences do not vary (length then explains nothing)."""
    d = np.asarray(length_differences, dtype=float)
    scale = float(d.std()) if d.size else 0.0
    return np.tanh(d / scale) if scale > 0 else np.zeros_like(d)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _objective(theta: np.ndarray, x: np.ndarray, y: np.ndarray, weights: np.ndarray, precision: float) -> np.ndarray:
    z = theta[:, :1] + theta[:, 1:] * x
    # log sigmoid(z) for a win, log sigmoid(-z) for a loss, computed stably.
    return (weights * (y * z - np.logaddexp(0.0, z))).sum(axis=1) - 0.5 * precision * (theta**2).sum(axis=1)


def _newton_step(theta: np.ndarray, x: np.ndarray, y: np.ndarray, weights: np.ndarray, precision: float) -> np.ndarray:
    """The Newton step of every fit at once; the 2x2 information matrices are inverted in closed form."""
    p = _sigmoid(theta[:, :1] + theta[:, 1:] * x)
    residual = weights * (y - p)
    g_a = residual.sum(axis=1) - precision * theta[:, 0]
    g_b = residual @ x - precision * theta[:, 1]
    curvature = weights * p * (1.0 - p)
    h_aa = curvature.sum(axis=1) + precision
    h_ab = curvature @ x
    h_bb = curvature @ (x * x) + precision
    determinant = h_aa * h_bb - h_ab**2
    return np.stack([(h_bb * g_a - h_ab * g_b) / determinant, (h_aa * g_b - h_ab * g_a) / determinant], axis=1)


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray, *, prior_sd: float = PRIOR_SD) -> np.ndarray:
    """(a, b) maximising the weighted log-likelihood of P(y=1) = sigmoid(a + b x) plus the prior, per weight row.

    ``weights`` is (fits, n): one row per fit (a bootstrap resample's counts, or ones). The objective is
    strictly concave, so Newton's method with step halving converges in a handful of steps.
    """
    precision = 1.0 / prior_sd**2
    theta = np.zeros((weights.shape[0], 2))
    value = _objective(theta, x, y, weights, precision)
    for _ in range(100):
        step = _newton_step(theta, x, y, weights, precision)
        scale = np.ones(len(theta))
        for _ in range(40):
            candidate = theta + scale[:, None] * step
            candidate_value = _objective(candidate, x, y, weights, precision)
            worse = candidate_value < value - 1e-12
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        theta, value = candidate, candidate_value
        if np.max(np.abs(scale[:, None] * step)) < 1e-9:
            break
    return theta


def length_controlled_win_rate(
    outcomes: Sequence[float], length_differences: Sequence[float], *, bootstrap: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> LengthControlled | None:
    """The win rate at equal length from decisive verdicts (see the module doc).

    ``outcomes[i]`` is 1 when the candidate won verdict i and 0 when it lost; ``length_differences[i]``
    is the candidate's length minus the other side's. None below ``MIN_VERDICTS`` verdicts, or when the
    candidate was longer in all of them or shorter in all of them. With ``bootstrap`` 0 the interval has
    no width.
    """
    y = np.asarray(outcomes, dtype=float)
    d = np.asarray(length_differences, dtype=float)
    if y.shape != d.shape:
        raise ValueError("one length difference per outcome")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("outcomes are 1 (won) or 0 (lost); leave ties out")
    if y.size < MIN_VERDICTS or d.min() > 0 or d.max() < 0:
        return None
    x = length_feature(d)
    a, b = fit_logistic(x, y, np.ones((1, y.size)))[0]
    low = high = float(_sigmoid(np.array(a)))
    if bootstrap > 0:
        counts = np.random.default_rng(seed).multinomial(y.size, np.full(y.size, 1.0 / y.size), size=bootstrap)
        rates = _sigmoid(fit_logistic(x, y, counts.astype(float))[:, 0])
        low, high = (float(q) for q in np.percentile(rates, [2.5, 97.5]))
    return LengthControlled(
        win_rate=float(_sigmoid(np.array(a))), ci_low=low, ci_high=high, length_slope=float(b), verdicts=int(y.size)
    )
