"""A run's schedule resolved against its data: optimiser, rate, warm-up, batch and epochs, and so its steps.

The DPO paper's settings (RMSprop, lr 1e-6, 150 warm-up steps, batch 64, one epoch) assume a large dataset;
on the few dozen pairs of one Duet round they make one optimiser step and teach nothing. A field left ``None``
in :class:`~dpo_engine.config.TrainConfig` is "auto": :func:`resolve_schedule` picks it from the number of
training pairs, and any value set explicitly wins. Step arithmetic (how many steps an epoch has, how many
pairs the last one takes) lives here too, so that the schedule and the loop count the same way. Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# The TrainConfig fields that are "auto" (None) unless given, in the order they are reported.
SCHEDULE_FIELDS = ("optimizer", "lr", "warmup_steps", "epochs", "batch_size", "grad_accum")

# From here on the paper's settings are used unchanged. At 2000 pairs its batch of 64 still makes 32 steps
# per epoch, enough for a run to move; below that the step count falls toward one, and the paper's rate of
# 1e-6 moves the policy too little to change a single answer. The paper's own datasets had tens of thousands.
PAPER_MIN_PAIRS = 2000
# The DPO paper's (Rafailov et al. 2023, appendix B) settings.
PAPER_OPTIMIZER = "rmsprop"
PAPER_LR = 1e-6
PAPER_WARMUP_STEPS = 150
PAPER_EPOCHS = 1
PAPER_EFFECTIVE_BATCH = 64

# Below PAPER_MIN_PAIRS. AdamW's per-parameter step sizes make progress in tens of steps where RMSprop at the
# paper's rate needs hundreds; the rate is 5x the paper's because the run has a few dozen steps, not thousands.
SMALL_OPTIMIZER = "adamw"
SMALL_LR = 5e-6
# Three passes: each pair is seen from three reshuffled batches, while DPO's margins on the training pairs
# keep growing (over-fitting) in longer runs on this little data.
SMALL_EPOCHS = 3
# The effective batch is the largest power of two at most pairs / SMALL_MIN_STEPS_PER_EPOCH, so an epoch has
# at least about 8 steps ...
SMALL_MIN_STEPS_PER_EPOCH = 8
# ... but no fewer than 4 pairs (one pair per step makes a noisy gradient) and no more than the paper's 64.
SMALL_BATCH_MIN = 4
SMALL_BATCH_MAX = PAPER_EFFECTIVE_BATCH
# Warm-up over the first 10% of the steps: long enough to spare AdamW's first, badly scaled steps, short
# enough that most of a short run trains at its rate.
SMALL_WARMUP_PERCENT = 10

# Pairs per micro-batch when the batch size is auto: what a 135M model's forward pass at 512 tokens fits in a
# few GB, and the paper's 64 as 8 micro-batches of 8.
MICRO_BATCH_MAX = 8

# Held-out evaluation during a run, when --eval-every is auto: runs shorter than this are scored only before and
# after (a curve of two or three points says no more) ...
EVAL_EVERY_MIN_STEPS = 50
# ... longer ones about five times in between ...
EVAL_EVERY_DIVISOR = 5
# ... but never more often than every 10 steps, as scoring the held-out pairs costs about as much as a step.
EVAL_EVERY_MIN = 10

Regime = Literal["paper", "small-data"]


@dataclass(frozen=True)
class Schedule:
    """The resolved schedule of one run: the six TrainConfig values, and the steps they make on ``pairs``."""

    pairs: int
    world_size: int
    regime: Regime
    optimizer: str
    lr: float
    warmup_steps: int
    epochs: int
    batch_size: int  # pairs per micro-batch on each process
    grad_accum: int  # micro-batches per optimiser step
    effective_batch: int  # batch_size x grad_accum x world_size: the pairs of a full step
    steps_per_epoch: int
    total_steps: int
    notes: tuple[str, ...] = ()  # what was chosen and why, in words, for the log and the run page

    def overrides(self) -> dict[str, Any]:
        """The six TrainConfig values, for ``dataclasses.replace(config, **schedule.overrides())``."""
        return {name: getattr(self, name) for name in SCHEDULE_FIELDS}

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["notes"] = list(self.notes)
        return values


def resolve_schedule(*, pairs: int, given: Mapping[str, Any] | None = None, world_size: int = 1) -> Schedule:
    """The schedule of a run on ``pairs`` training pairs across ``world_size`` processes.

    ``given`` holds the values set explicitly (None values are ignored); each of them is kept, and the
    others are chosen around them: a given batch size changes the number of steps, given epochs change the
    small-data warm-up. Raises ``ValueError`` when there is not one pair per process.
    """
    if pairs < max(world_size, 1):
        raise ValueError(f"{pairs} training pairs: a run needs at least one per process ({world_size})")
    fixed = {k: v for k, v in (given or {}).items() if k in SCHEDULE_FIELDS and v is not None}
    paper = pairs >= PAPER_MIN_PAIRS
    notes = [_regime_note(pairs, paper)]
    wanted = PAPER_EFFECTIVE_BATCH if paper else _small_data_batch(pairs)
    batch_size, grad_accum = _batch_shape(min(wanted, pairs), world_size, fixed)
    effective = batch_size * grad_accum * world_size
    if wanted > pairs >= effective:
        notes.append(f"an effective batch of {wanted} would be more than the {pairs} pairs: it shrinks to "
                     f"{effective}, so no pair is repeated within a step")
    per_epoch = steps_per_epoch(pairs, effective, world_size)
    epochs = fixed.get("epochs", PAPER_EPOCHS if paper else SMALL_EPOCHS)
    total = per_epoch * epochs
    default_warmup = PAPER_WARMUP_STEPS if paper else max(1, (total * SMALL_WARMUP_PERCENT + 50) // 100)
    schedule = Schedule(
        pairs=pairs, world_size=world_size, regime="paper" if paper else "small-data",
        optimizer=fixed.get("optimizer", PAPER_OPTIMIZER if paper else SMALL_OPTIMIZER),
        lr=fixed.get("lr", PAPER_LR if paper else SMALL_LR), warmup_steps=fixed.get("warmup_steps", default_warmup),
        epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, effective_batch=effective,
        steps_per_epoch=per_epoch, total_steps=total,
    )
    notes += _schedule_notes(schedule, fixed)
    return dataclasses.replace(schedule, notes=tuple(notes))


def _regime_note(pairs: int, paper: bool) -> str:
    if paper:
        return (f"{pairs} pairs >= {PAPER_MIN_PAIRS}: the DPO paper's schedule ({PAPER_OPTIMIZER}, lr {PAPER_LR:g}, "
                f"warm-up {PAPER_WARMUP_STEPS}, effective batch {PAPER_EFFECTIVE_BATCH}, {PAPER_EPOCHS} epoch)")
    return (f"{pairs} pairs < {PAPER_MIN_PAIRS}: small-data schedule ({SMALL_OPTIMIZER}, lr {SMALL_LR:g}, "
            f"{SMALL_EPOCHS} epochs, effective batch = largest power of two <= pairs/{SMALL_MIN_STEPS_PER_EPOCH} "
            f"within [{SMALL_BATCH_MIN}, {SMALL_BATCH_MAX}], warm-up {SMALL_WARMUP_PERCENT}% of the steps), "
            "so that the run takes enough steps to learn")


def _small_data_batch(pairs: int) -> int:
    per_step = pairs // SMALL_MIN_STEPS_PER_EPOCH
    power = 1 << (per_step.bit_length() - 1) if per_step >= 1 else 1
    return min(max(power, SMALL_BATCH_MIN), SMALL_BATCH_MAX)


def _batch_shape(target: int, world_size: int, fixed: Mapping[str, Any]) -> tuple[int, int]:
    """Micro-batch size and accumulation that make ``target`` pairs per step across ``world_size`` processes,
    keeping whichever of the two was given."""
    accum_given = fixed.get("grad_accum")
    per_process_micro = max(1, target // (world_size * (accum_given or 1)))
    batch_size = fixed.get("batch_size", min(MICRO_BATCH_MAX, per_process_micro))
    grad_accum = accum_given or max(1, target // (batch_size * world_size))
    return batch_size, grad_accum


def _schedule_notes(schedule: Schedule, fixed: Mapping[str, Any]) -> list[str]:
    s = schedule
    notes = [f"{s.optimizer}, lr {s.lr:g}, warm-up {s.warmup_steps}, {s.epochs} epoch(s) of {s.steps_per_epoch} "
             f"steps = {s.total_steps} optimiser steps; effective batch {s.effective_batch} = {s.batch_size} pairs "
             f"x {s.grad_accum} micro-batches x {s.world_size} process(es)"]
    if fixed:
        notes.append("kept as given: " + ", ".join(f"{k}={fixed[k]}" for k in SCHEDULE_FIELDS if k in fixed))
    shape = {"batch_size": s.batch_size, "grad_accum": s.grad_accum, "world_size": s.world_size}
    last = step_size(s.pairs, s.steps_per_epoch - 1, **shape)
    if s.effective_batch > s.pairs:
        notes.append(f"the effective batch ({s.effective_batch}) is more than the {s.pairs} pairs: each epoch is "
                     "one step over every pair once (no pair is repeated)")
    elif last < s.effective_batch:
        notes.append(f"each epoch's last step takes the remaining {last} pairs (no pair is repeated)")
    dropped = dropped_per_epoch(s.pairs, **shape)
    if dropped:
        notes.append(f"with {s.world_size} processes the last {dropped} pair(s) of each epoch's order are left out "
                     "(every process needs a pair in each micro-batch); the order reshuffles every epoch, so a "
                     "different pair is left out each time")
    if s.warmup_steps >= s.total_steps:
        reached = s.total_steps / (s.warmup_steps + 1)
        notes.append(f"the warm-up ({s.warmup_steps} steps) is longer than the run ({s.total_steps} steps): the "
                     f"rate reaches only {reached:.0%} of lr {s.lr:g}")
    return notes


def resolve_eval_every(eval_every: int | None, total_steps: int) -> int:
    """Steps between held-out evaluations during the run (0: only before and after); None is auto."""
    if eval_every is not None:
        return eval_every
    if total_steps < EVAL_EVERY_MIN_STEPS:
        return 0
    return max(EVAL_EVERY_MIN, total_steps // EVAL_EVERY_DIVISOR)


# --- step arithmetic, shared with dpo_engine.schedule (which orders the pairs) ------------------------------------


def steps_per_epoch(num_pairs: int, pairs_per_step: int, world_size: int = 1) -> int:
    """Optimiser steps per epoch: full steps, then one smaller step with the rest when every process gets a pair
    of it (never a step filled up by repeating pairs)."""
    full, rest = divmod(num_pairs, pairs_per_step)
    return full + (1 if rest >= world_size else 0)


def step_size(num_pairs: int, position: int, *, batch_size: int, grad_accum: int, world_size: int) -> int:
    """How many pairs, over all processes, step ``position`` of an epoch trains on (0 past the epoch's end).

    A full step takes ``batch_size x grad_accum x world_size``; the last one takes the rest, split across the
    processes as evenly as possible. Every process must run the same number of non-empty micro-batches (DDP
    and FSDP exchange data in each), so a rest smaller than ``world_size`` is left out, and with
    ``batch_size`` 1 (one pair per micro-batch) the rest is cut to a multiple of ``world_size``.
    """
    per_step = batch_size * grad_accum * world_size
    n = min(per_step, max(0, num_pairs - position * per_step))
    if n < world_size:
        return 0
    if n // world_size < micro_batch_count(n, batch_size=batch_size, world_size=world_size):
        n -= n % world_size
    return n


def micro_batch_count(step_pairs: int, *, batch_size: int, world_size: int) -> int:
    """Micro-batches each process runs for a step of ``step_pairs`` pairs: enough for the largest share."""
    return math.ceil(math.ceil(step_pairs / world_size) / batch_size)


def dropped_per_epoch(num_pairs: int, *, batch_size: int, grad_accum: int, world_size: int) -> int:
    """Pairs of each epoch's order that no step takes (only ever some of the last step's, with several processes)."""
    full, rest = divmod(num_pairs, batch_size * grad_accum * world_size)
    return rest - step_size(num_pairs, full, batch_size=batch_size, grad_accum=grad_accum, world_size=world_size)
