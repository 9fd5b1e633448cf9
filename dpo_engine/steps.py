"""One optimiser step, shared by the SFT warm start and the DPO loop: gradients accumulated over micro-batches
(all-reduced once per step under DDP), a global-norm clip that spans FSDP shards, then the optimiser and
learning-rate schedule steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from dpo_engine.components import autocast

MicroBatch = TypeVar("MicroBatch")


def accumulate_gradients(
    wrapped: nn.Module,
    micro_batches: Sequence[MicroBatch],
    loss_of: Callable[[MicroBatch], Tensor],
    *,
    device: torch.device,
    dtype: torch.dtype,
    weights: Sequence[float] | None = None,
) -> None:
    """Back-propagate ``sum(weights[i] * loss_of(micro_batches[i]))``, each forward under autocast.

    Without ``weights`` each micro-batch weighs ``1 / len(micro_batches)``: the mean of the micro-batch losses.
    """
    for i, micro_batch in enumerate(micro_batches):
        # Gradients are all-reduced once per optimiser step, on the last micro-batch.
        sync = i == len(micro_batches) - 1 or not hasattr(wrapped, "no_sync")
        with wrapped.no_sync() if not sync else nullcontext(), autocast(device, dtype):  # type: ignore[operator]
            loss = loss_of(micro_batch)
        (loss / len(micro_batches) if weights is None else loss * weights[i]).backward()


def clip_grad_norm(wrapped: nn.Module, max_norm: float) -> float:
    """Clip (when ``max_norm`` > 0) and return the global gradient norm before clipping."""
    limit = max_norm if max_norm > 0 else float("inf")
    fsdp: Any = wrapped
    if hasattr(fsdp, "clip_grad_norm_"):  # FSDP: the norm spans all shards
        return float(fsdp.clip_grad_norm_(limit))
    return float(nn.utils.clip_grad_norm_([p for p in wrapped.parameters() if p.grad is not None], limit))


def optimizer_step(
    wrapped: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    max_grad_norm: float,
) -> tuple[float, float]:
    """Clip, step the optimiser and the schedule, clear the gradients; return the gradient norm before clipping
    and the learning rate this step used."""
    grad_norm = clip_grad_norm(wrapped, max_grad_norm)
    learning_rate = float(scheduler.get_last_lr()[0])
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, learning_rate
