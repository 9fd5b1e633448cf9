"""Data order, optimiser and learning-rate schedule shared by the SFT and DPO loops.

No pair is repeated to fill a step: an epoch's last step is smaller (see :mod:`dpo_engine.config.schedule`,
which also counts the steps, so the schedule and the loops agree).

The order of pairs is a pure function of ``(seed, epoch)``, so a resumed run, or any process of a
distributed one, finds the same pairs at the same step without storing the permutation.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from dpo_engine.config.schedule import micro_batch_count, step_size

# Multiplies the seed before the epoch is added: a prime above any epoch count, so no two (seed, epoch) pairs
# share a generator seed.
_EPOCH_SEED_STRIDE = 1_000_003


def epoch_order(num_pairs: int, seed: int, epoch: int) -> list[int]:
    """The shuffled pair indices of ``epoch``."""
    generator = torch.Generator().manual_seed(seed * _EPOCH_SEED_STRIDE + epoch)
    return torch.randperm(num_pairs, generator=generator).tolist()


def step_micro_batches(
    order: list[int], position: int, *, batch_size: int, grad_accum: int, rank: int, world_size: int
) -> list[list[int]]:
    """This process's micro-batches of step ``position`` within an epoch ordered by ``order``.

    A full step gives every process ``grad_accum`` micro-batches of ``batch_size`` pairs. The epoch's last step
    takes only the pairs left (none repeated), split across processes as evenly as possible and, on each, into
    the same number of micro-batches of near-equal size (never above ``batch_size``), so that every process runs
    as many forward passes as the others; :func:`~dpo_engine.config.schedule.step_size` says which pairs of a
    tail too small for that are left out.
    """
    n = step_size(len(order), position, batch_size=batch_size, grad_accum=grad_accum, world_size=world_size)
    start = position * batch_size * grad_accum * world_size
    share = _split_even(order[start:start + n], world_size)[rank]
    return _split_even(share, micro_batch_count(n, batch_size=batch_size, world_size=world_size)) if n else []


def step_pairs(
    order: list[int], position: int, *, batch_size: int, grad_accum: int, rank: int, world_size: int
) -> list[int]:
    """This process's share of the pairs of step ``position`` within an epoch (its micro-batches, in order)."""
    micro = step_micro_batches(order, position, batch_size=batch_size, grad_accum=grad_accum, rank=rank,
                               world_size=world_size)
    return [index for batch in micro for index in batch]


def _split_even(items: list[int], parts: int) -> list[list[int]]:
    """``items`` cut into ``parts`` consecutive runs whose lengths differ by at most one, the longer first."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[bounds[i]:bounds[i + 1]] for i in range(parts)]


def build_optimizer(
    name: str, params: Iterable[nn.Parameter], *, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """RMSprop (the DPO paper's choice) or AdamW."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    if name == "rmsprop":
        return torch.optim.RMSprop(trainable, lr=lr)
    if name == "adamw":
        # The fused kernel updates in place, without foreach's full-size temporaries (lower peak memory).
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in trainable)
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay, fused=fused)
    raise ValueError(f"unknown optimizer {name!r}: use rmsprop or adamw")


def linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak rate over ``warmup_steps``, then constant (the DPO reference schedule)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / (warmup_steps + 1))
    )
