"""Data order, optimiser and learning-rate schedule shared by the SFT and DPO loops.

The order of pairs is a pure function of ``(seed, epoch)``, so a resumed run, or any process of a
distributed one, finds the same pairs at the same step without storing the permutation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

# Multiplies the seed before the epoch is added: a prime above any epoch count, so no two (seed, epoch) pairs
# share a generator seed.
_EPOCH_SEED_STRIDE = 1_000_003


def epoch_order(num_pairs: int, seed: int, epoch: int) -> list[int]:
    """The shuffled pair indices of ``epoch``."""
    generator = torch.Generator().manual_seed(seed * _EPOCH_SEED_STRIDE + epoch)
    return torch.randperm(num_pairs, generator=generator).tolist()


def steps_per_epoch(num_pairs: int, pairs_per_step: int) -> int:
    """Optimiser steps per epoch; the last step is filled by wrapping around to the epoch's first pairs."""
    return max(1, math.ceil(num_pairs / pairs_per_step))


def step_pairs(order: list[int], position: int, *, pairs_per_step: int, rank: int, world_size: int) -> list[int]:
    """This process's share of the pairs of step ``position`` within an epoch."""
    start = position * pairs_per_step
    chosen = [order[(start + i) % len(order)] for i in range(pairs_per_step)]
    per_rank = pairs_per_step // world_size
    return chosen[rank * per_rank:(rank + 1) * per_rank]


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
