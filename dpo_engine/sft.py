"""Supervised warm-up before DPO: maximum likelihood of the chosen completions given their prompts.

The DPO paper starts from a model fine-tuned on the preferred answers (``pi_SFT``) so that the
reference assigns them reasonable likelihood; ``--sft-epochs N`` runs that phase with the same
packing, optimiser family, data order and optimiser step (:mod:`dpo_engine.steps`) as the DPO loop.
Its result is both the starting policy and the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from dpo_engine.config import SCHEDULE_FIELDS, Schedule, TrainConfig, resolve_schedule
from dpo_engine.data import TokenizedPair
from dpo_engine.distributed import DistContext, wrap_data_parallel
from dpo_engine.logprobs import SequenceLogps
from dpo_engine.packing import pack_pairs
from dpo_engine.schedule import build_optimizer, epoch_order, linear_warmup, step_micro_batches
from dpo_engine.steps import accumulate_gradients, optimizer_step

# Added to the seed of the data order: a prime, so that the SFT phase does not see the DPO phase's order.
_SEED_OFFSET = 7919
# The warm-up lasts at most 1/10 of the SFT steps: the phase is short, and should spend most of it at its rate.
_MAX_WARMUP_DIVISOR = 10


def run_sft(
    model: nn.Module,
    pairs: Sequence[TokenizedPair],
    *,
    config: TrainConfig,
    ctx: DistContext,
    pad_token_id: int,
    dtype: torch.dtype,
    log: Callable[[str], None],
    schedule: Schedule | None = None,
) -> list[float]:
    """Train ``model`` in place for ``config.sft_epochs`` epochs on (prompt, chosen); return per-step mean NLL.

    ``schedule`` (optimiser, batch shape, warm-up) is the DPO run's; without one it is resolved from ``config``
    against ``pairs``.
    """
    if schedule is None:
        given = {name: getattr(config, name) for name in SCHEDULE_FIELDS}
        schedule = resolve_schedule(pairs=len(pairs), given=given, world_size=ctx.world_size)
    wrapped = wrap_data_parallel(SequenceLogps(model), ctx, fsdp=config.fsdp)
    optimizer = build_optimizer(schedule.optimizer, wrapped.parameters(), lr=config.sft_lr,
                                weight_decay=config.weight_decay)
    per_epoch = schedule.steps_per_epoch
    total = per_epoch * config.sft_epochs
    scheduler = linear_warmup(optimizer, min(schedule.warmup_steps, total // _MAX_WARMUP_DIVISOR))
    shape = {"batch_size": schedule.batch_size, "grad_accum": schedule.grad_accum, "rank": ctx.rank,
             "world_size": ctx.world_size}
    model.train()
    losses: list[float] = []
    for step in range(total):
        epoch, position = divmod(step, per_epoch)
        order = epoch_order(len(pairs), config.seed + _SEED_OFFSET, epoch)
        micro_batches = step_micro_batches(order, position, **shape)
        sums = _accumulate_nll(wrapped, pairs, micro_batches, config=config, ctx=ctx, pad_token_id=pad_token_id,
                               dtype=dtype)
        optimizer_step(wrapped, optimizer, scheduler, config.max_grad_norm)
        total_sums = ctx.all_reduce_sum(sums)
        losses.append(total_sums[0].item() / total_sums[1].item())
        log(f"sft step {step + 1}/{total} nll {losses[-1]:.4f}")
    model.eval()
    return losses


def _accumulate_nll(
    wrapped: nn.Module,
    pairs: Sequence[TokenizedPair],
    micro_batches: list[list[int]],
    *,
    config: TrainConfig,
    ctx: DistContext,
    pad_token_id: int,
    dtype: torch.dtype,
) -> Tensor:
    """Back-propagate the mean per-token NLL of the chosen completions of ``micro_batches``; return
    ``[sum of the micro-batch NLLs, number of micro-batches]`` (float64) for the step's mean.

    Each micro-batch weighs the same. An epoch's smaller last step splits its pairs into micro-batches of
    near-equal size, so that stays close to a mean over pairs (a per-token mean weighs tokens, not pairs, anyway).
    """
    sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)

    def nll_of(indices: list[int]) -> Tensor:
        batch = pack_pairs([pairs[j] for j in indices], pad_token_id=pad_token_id,
                           pack_tokens=config.pack_tokens, completions="chosen").to(ctx.device)
        nll = -wrapped(batch).sum() / max(batch.target_ids.numel(), 1)
        sums.add_(torch.tensor([nll.item(), 1.0], dtype=torch.float64, device=ctx.device))
        return nll

    accumulate_gradients(wrapped, micro_batches, nll_of, device=ctx.device, dtype=dtype)
    return sums
