"""How a training run is measured: which frozen pairs it holds out, and when it counts as having learned.

Pure functions of counts and metrics, shared by the start form's preview (how many pairs a run will train
on), the worker's freeze (which pairs it holds out) and its verdict; nothing here touches the database.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A tenth of the pairs is the usual held-out share: enough to measure on, little taken from training.
HELDOUT_SHARE = 0.1
# Fewer held-out pairs than this measure nothing: on 5 pairs one pair moves the accuracy by 20 points, and the
# newcomer's first run (55 judged demo pairs, 2026-12-02) drew 3 of its 5 from the pairs whose two answers
# differ by under 20 characters, where its judge's preference is close to a coin. Eight: one pair is 12.5 points.
HELDOUT_MIN = 8
# Below this many pairs, eight held out would take more than a fifth of the data: train on all of them instead,
# and judge the run by its training margin.
HELDOUT_MIN_PAIRS = 40

# Held-out accuracy must beat a coin by this much: ten points is two standard errors of a coin's accuracy
# on 100 held-out pairs (0.5 / sqrt(100) = 0.05), the held-out set of a 1,000-pair run; on the smallest
# set (8 pairs) it asks for 5 right, one more than a coin's expected 4.
LEARN_MARGIN = 0.1
# Without held-out pairs: the mean training margin of the last steps must stay above this. Before the first
# step the margin is exactly 0 (the policy is the reference) and float noise is ~1e-6; a run that learns
# moves it by hundredths (β = 0.1 times a log-ratio gap of a tenth of a nat is 0.01).
MARGIN_EPSILON = 1e-3
# The last steps whose margins are averaged: enough to smooth one lucky batch.
MARGIN_TAIL_STEPS = 5

ACCURACY = "eval/rewards/accuracies"


def heldout_size(pairs: int) -> int:
    """How many of ``pairs`` frozen pairs a run holds out: a tenth (rounded down), at least 8, none below 40."""
    if pairs < HELDOUT_MIN_PAIRS:
        return 0
    return max(HELDOUT_MIN, int(pairs * HELDOUT_SHARE))


def heldout_indices(pairs: int, *, seed: int) -> list[int]:
    """The row numbers held out of ``pairs`` rows, sorted: the same rows for the same count and seed."""
    return sorted(random.Random(seed).sample(range(pairs), heldout_size(pairs)))


@dataclass(frozen=True)
class Verdict:
    learned: bool
    sentence: str


def learning_verdict(
    *, eval_after: dict[str, Any], heldout_rows: int, train_margins: Sequence[float]
) -> Verdict:
    """Whether a finished run learned: held-out accuracy above chance plus ``LEARN_MARGIN``, or, without
    held-out pairs, a mean margin over its last steps (``train_margins``, newest last) above ``MARGIN_EPSILON``.
    """
    accuracy = eval_after.get(ACCURACY)
    if heldout_rows and isinstance(accuracy, int | float):
        bar = 0.5 + LEARN_MARGIN
        if accuracy > bar:
            return Verdict(True, f"It learned: held-out accuracy {accuracy:.0%} on {heldout_rows} pairs is above "
                                 f"the {bar:.0%} bar (chance plus {LEARN_MARGIN:.0%}).")
        return Verdict(False, f"It did not learn: held-out accuracy {accuracy:.0%} on {heldout_rows} pairs is not "
                              f"above the {bar:.0%} bar (chance plus {LEARN_MARGIN:.0%}).")
    tail = list(train_margins)[-MARGIN_TAIL_STEPS:]
    if not tail:
        return Verdict(False, "It did not learn: it logged no training margins to judge it by.")
    mean = sum(tail) / len(tail)
    shown = f"the mean reward margin of its last {len(tail)} step{'s' if len(tail) > 1 else ''} ({mean:.2g})"
    if mean > MARGIN_EPSILON:
        return Verdict(True, f"It learned: without held-out pairs, {shown} stayed above {MARGIN_EPSILON:g}.")
    return Verdict(False, f"It did not learn: without held-out pairs, {shown} is not above {MARGIN_EPSILON:g}.")
