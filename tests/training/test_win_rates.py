"""Win rates: the Wilson interval, and the length-controlled win rate on constructed verdicts."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from training.win_rates import Record, fit_logistic, length_controlled_win_rate, length_feature, wilson_interval


def _normal_quantiles(mean: float, sd: float, n: int) -> np.ndarray:
    """n evenly spread quantiles of N(mean, sd^2): a smooth, deterministic sample of length differences."""
    normal = NormalDist(mean, sd)
    return np.array([normal.inv_cdf((i + 0.5) / n) for i in range(n)])


def test_when_the_shorter_answer_always_wins_the_length_controlled_rate_is_near_half():
    # The candidate is shorter in most pairs, so its plain win rate is ~90%; at equal length it has no edge.
    differences = _normal_quantiles(-150.0, 113.0, 1000)
    outcomes = (differences < 0).astype(float)
    result = length_controlled_win_rate(outcomes, differences, bootstrap=100)
    assert result is not None
    assert outcomes.mean() > 0.9
    assert result.win_rate == pytest.approx(0.5, abs=0.05)
    assert result.length_slope < 0, "the judge favours the shorter answer"


def test_a_judge_that_goes_by_length_only_sometimes_is_read_off_at_equal_length():
    # People who mostly (not always) prefer the shorter answer: P(win) = sigmoid(-3 x) with no edge at equal length.
    rng = np.random.default_rng(0)
    differences = _normal_quantiles(-100.0, 113.0, 4000)
    outcomes = (rng.random(differences.size) < 1 / (1 + np.exp(3 * length_feature(differences)))).astype(float)
    result = length_controlled_win_rate(outcomes, differences, bootstrap=100)
    assert result is not None
    assert outcomes.mean() > 0.7
    assert result.win_rate == pytest.approx(0.5, abs=0.04)
    assert result.ci_low < 0.5 < result.ci_high


def test_when_winning_does_not_depend_on_length_the_length_controlled_rate_is_the_plain_rate():
    rng = np.random.default_rng(1)
    differences = rng.permutation(_normal_quantiles(-100.0, 113.0, 2000))
    outcomes = (np.arange(differences.size) % 10 < 7).astype(float)  # 70% wins, unrelated to the lengths
    result = length_controlled_win_rate(outcomes, differences, bootstrap=100)
    assert result is not None
    assert result.win_rate == pytest.approx(0.7, abs=0.03)
    assert result.ci_low < 0.7 < result.ci_high
    assert abs(result.length_slope) < 0.5


def test_the_interval_contains_the_estimate_and_the_bootstrap_is_seeded():
    differences = [-30.0, 10.0, -5.0, 40.0, -60.0, 25.0, -15.0, 5.0, -20.0, 35.0]
    outcomes = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    first = length_controlled_win_rate(outcomes, differences, seed=3)
    assert first is not None
    assert first.ci_low <= first.win_rate <= first.ci_high
    assert first == length_controlled_win_rate(outcomes, differences, seed=3)
    assert first.verdicts == 10


def test_a_candidate_that_wins_everything_gets_a_high_finite_rate():
    result = length_controlled_win_rate([1.0] * 20, list(np.linspace(-50, 50, 20)), bootstrap=20)
    assert result is not None
    assert 0.9 < result.win_rate < 1.0


def test_equal_lengths_give_the_plain_rate():
    result = length_controlled_win_rate([1.0, 1.0, 1.0, 0.0] * 3, [0.0] * 12, bootstrap=0)
    assert result is not None
    assert result.win_rate == pytest.approx(0.75, abs=0.02), "the weak prior barely pulls"
    assert result.length_slope == 0.0


def test_a_candidate_shorter_in_every_verdict_has_no_rate_at_equal_length():
    # The data never show it at equal length or longer: the intercept would be the prior's guess.
    assert length_controlled_win_rate([1.0] * 30, list(np.linspace(-90, -5, 30))) is None
    assert length_controlled_win_rate([0.0] * 30, list(np.linspace(5, 90, 30))) is None


def test_too_few_verdicts_give_none_and_ties_are_refused():
    assert length_controlled_win_rate([], []) is None
    assert length_controlled_win_rate([1.0, 0.0] * 4, [-10.0, 10.0] * 4) is None
    with pytest.raises(ValueError, match="leave ties out"):
        length_controlled_win_rate([0.5] * 10, [3.0] * 10)


def test_the_logistic_fit_matches_the_closed_form_without_a_length_effect():
    # Only the intercept varies: its maximum-likelihood value is the log-odds of the share of wins.
    x = np.zeros(40)
    y = np.array([1.0] * 30 + [0.0] * 10)
    a, b = fit_logistic(x, y, np.ones((1, 40)), prior_sd=1e6)[0]
    assert a == pytest.approx(np.log(3.0), rel=1e-6)
    assert b == pytest.approx(0.0, abs=1e-9)


def test_wilson_interval_and_record():
    record = Record(wins=3, losses=1, ties=2)
    assert record.win_rate == 0.75
    assert record.win_rate_ci == wilson_interval(3, 4)
    low, high = record.win_rate_ci  # type: ignore[misc]
    assert low < 0.75 < high
    assert wilson_interval(0, 0) is None
