"""Supervised warm-up before DPO: maximum likelihood of the chosen completions given their prompts.

The DPO paper starts from a model fine-tuned on the preferred answers (``pi_SFT``) so that the
reference assigns them reasonable likelihood; ``--sft-epochs N`` runs that phase with the same
packing, optimiser family and data order as the DPO loop. Its result is both the starting policy
and the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from dpo_engine.components import autocast
from dpo_engine.config import TrainConfig
from dpo_engine.data import TokenizedPair
from dpo_engine.distributed import DistContext, wrap_data_parallel
from dpo_engine.logprobs import SequenceLogps
from dpo_engine.metrics import batches
from dpo_engine.packing import pack_pairs
from dpo_engine.schedule import build_optimizer, epoch_order, linear_warmup, step_pairs, steps_per_epoch


def run_sft(
    model: nn.Module,
    pairs: Sequence[TokenizedPair],
    *,
    config: TrainConfig,
    ctx: DistContext,
    pad_token_id: int,
    dtype: torch.dtype,
    log: Callable[[str], None],
) -> list[float]:
    """Train ``model`` in place for ``config.sft_epochs`` epochs on (prompt, chosen); return per-step mean NLL."""
    module = SequenceLogps(model)
    wrapped = wrap_data_parallel(module, ctx, fsdp=config.fsdp)
    optimizer = build_optimizer(config.optimizer, wrapped.parameters(), lr=config.sft_lr,
                                weight_decay=config.weight_decay)
    pairs_per_step = config.batch_size * config.grad_accum * ctx.world_size
    per_epoch = steps_per_epoch(len(pairs), pairs_per_step)
    total = per_epoch * config.sft_epochs
    scheduler = linear_warmup(optimizer, min(config.warmup_steps, total // 10))
    model.train()
    losses: list[float] = []
    for step in range(total):
        epoch, position = divmod(step, per_epoch)
        # A different stream from the DPO phase's, so the two phases do not see the same order.
        order = epoch_order(len(pairs), config.seed + 7919, epoch)
        share = step_pairs(order, position, pairs_per_step=pairs_per_step, rank=ctx.rank,
                           world_size=ctx.world_size)
        micro = batches(pairs, share, config.batch_size)
        sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)
        for i, indices in enumerate(micro):
            batch = pack_pairs([pairs[j] for j in indices], pad_token_id=pad_token_id,
                               pack_tokens=config.pack_tokens, completions="chosen").to(ctx.device)
            sync = i == len(micro) - 1 or not hasattr(wrapped, "no_sync")
            with wrapped.no_sync() if not sync else torch.enable_grad(), autocast(ctx.device, dtype):  # type: ignore[operator]
                nll = -wrapped(batch).sum() / max(batch.target_ids.numel(), 1)
            (nll / len(micro)).backward()
            sums += torch.tensor([nll.item(), 1.0], dtype=torch.float64, device=ctx.device)
        if config.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(wrapped.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total_sums = ctx.all_reduce_sum(sums)
        losses.append(total_sums[0].item() / total_sums[1].item())
        log(f"sft step {step + 1}/{total} nll {losses[-1]:.4f}")
    model.eval()
    return losses
