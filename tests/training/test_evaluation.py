"""How a run is measured: the held-out share of its pairs, and the verdict on whether it learned."""

from __future__ import annotations

import pytest

from training.evaluation import (
    HELDOUT_MIN,
    HELDOUT_MIN_PAIRS,
    LEARN_MARGIN,
    MARGIN_EPSILON,
    heldout_indices,
    heldout_size,
    learning_verdict,
)


@pytest.mark.parametrize(
    ("pairs", "held"),
    [(0, 0), (HELDOUT_MIN_PAIRS - 1, 0), (HELDOUT_MIN_PAIRS, HELDOUT_MIN), (45, 8), (100, 10), (2000, 200)],
)
def test_a_tenth_is_held_out_at_least_eight_and_none_below_forty_pairs(pairs: int, held: int) -> None:
    assert heldout_size(pairs) == held


def test_the_same_count_and_seed_hold_out_the_same_rows() -> None:
    assert heldout_indices(100, seed=42) == heldout_indices(100, seed=42)
    assert heldout_indices(100, seed=42) != heldout_indices(100, seed=43)
    assert len(set(heldout_indices(100, seed=42))) == 10


def test_held_out_accuracy_above_chance_plus_the_margin_is_learning() -> None:
    verdict = learning_verdict(
        eval_after={"eval/rewards/accuracies": 0.5 + LEARN_MARGIN + 0.05}, heldout_rows=20, train_margins=[]
    )
    assert verdict.learned
    assert verdict.sentence.startswith("It learned: held-out accuracy 65% on 20 pairs")


def test_held_out_accuracy_at_the_bar_is_not_learning_whatever_the_training_margin() -> None:
    verdict = learning_verdict(
        eval_after={"eval/rewards/accuracies": 0.5 + LEARN_MARGIN}, heldout_rows=20, train_margins=[5.0] * 5
    )
    assert not verdict.learned
    assert "is not above the 60% bar" in verdict.sentence


def test_without_held_out_pairs_a_margin_above_epsilon_over_the_last_steps_is_learning() -> None:
    assert learning_verdict(eval_after={}, heldout_rows=0, train_margins=[0.0] * 10 + [0.05] * 5).learned


def test_without_held_out_pairs_a_margin_that_falls_back_to_zero_is_not_learning() -> None:
    verdict = learning_verdict(eval_after={}, heldout_rows=0, train_margins=[0.5] * 10 + [MARGIN_EPSILON / 2] * 5)
    assert not verdict.learned
    assert "without held-out pairs" in verdict.sentence
