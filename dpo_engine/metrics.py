"""Per-step DPO metrics under TRL's names, the ``metrics.jsonl`` writer, and held-out evaluation."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dpo_engine.data import TokenizedPair
from dpo_engine.distributed import DistContext
from dpo_engine.packing import PackedBatch, pack_pairs

# Floor of a measured duration: a step can end within one tick of the clock, and a rate must stay finite.
_MIN_SECONDS = 1e-9

# Order of the per-pair statistics summed in :class:`PairStats`.
_STAT_NAMES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
               "logps/chosen", "logps/rejected")


class PairStats:
    """Running sums of per-pair statistics over micro-batches (and processes), averaged on demand."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(len(_STAT_NAMES) + 1, dtype=torch.float64, device=device)

    def add(self, *, loss: Tensor, chosen_rewards: Tensor, rejected_rewards: Tensor, chosen_logps: Tensor,
            rejected_logps: Tensor) -> None:
        """``loss`` is the micro-batch mean; the others are per pair [B]."""
        n = chosen_rewards.numel()
        values = torch.stack([
            loss.detach().double() * n,
            chosen_rewards.double().sum(),
            rejected_rewards.double().sum(),
            (chosen_rewards > rejected_rewards).double().sum(),
            (chosen_rewards - rejected_rewards).double().sum(),
            chosen_logps.detach().double().sum(),
            rejected_logps.detach().double().sum(),
            torch.tensor(float(n), dtype=torch.float64, device=self.sums.device),
        ])
        self.sums += values.to(self.sums.device)

    def means(self, ctx: DistContext, prefix: str = "") -> dict[str, float]:
        total = ctx.all_reduce_sum(self.sums)
        count = max(total[-1].item(), 1.0)
        return {prefix + name: total[i].item() / count for i, name in enumerate(_STAT_NAMES)}


def per_second(count: float, seconds: float) -> float:
    """A throughput (tokens per second), finite however short the measured time."""
    return count / max(seconds, _MIN_SECONDS)


class MetricsWriter:
    """Appends one JSON object per line to ``OUT/metrics.jsonl`` (main process only)."""

    def __init__(self, path: Path, *, enabled: bool, resume_after_step: int | None) -> None:
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if resume_after_step is not None and path.exists():
            # A resumed run continues the same curve: keep what the checkpoint had seen, drop the rest.
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record.get("step", 0) <= resume_after_step:
                    kept.append(line)
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")


def batches(pairs: Sequence[TokenizedPair], indices: Sequence[int], batch_size: int) -> list[list[int]]:
    """Split ``indices`` into micro-batches of ``batch_size`` (the last one may be shorter)."""
    return [list(indices[i:i + batch_size]) for i in range(0, len(indices), batch_size)]


@torch.no_grad()
def evaluate(
    pairs: Sequence[TokenizedPair],
    *,
    policy_logps: Callable[[PackedBatch], Tensor],
    reference_logps: Callable[[PackedBatch, list[int]], Tensor],
    loss_fn: Callable[[Tensor, Tensor, Tensor, Tensor, PackedBatch], Tensor],
    beta: float,
    batch_size: int,
    pad_token_id: int,
    pack_tokens: int,
    ctx: DistContext,
) -> dict[str, float]:
    """Reward accuracy, margin, loss and log-probs on held-out pairs, as ``eval/...`` metrics.

    Processes score interleaved shares of the pairs and the sums are combined, so every pair counts once.
    Every process runs the same number of forwards (a sharded model needs all of them in each one); a
    process whose share is shorter repeats a batch and leaves it out of the sums.
    """
    stats = PairStats(ctx.device)
    share = list(range(ctx.rank, len(pairs), ctx.world_size))
    chunks = batches(pairs, share, batch_size)
    rounds = math.ceil(math.ceil(len(pairs) / ctx.world_size) / batch_size)
    for round_index in range(rounds):
        counted = round_index < len(chunks)
        indices = chunks[round_index] if counted else [0]
        batch = pack_pairs([pairs[i] for i in indices], pad_token_id=pad_token_id, pack_tokens=pack_tokens)
        batch = batch.to(ctx.device)
        policy = policy_logps(batch).float()
        reference = reference_logps(batch, indices).float()
        if not counted:
            continue
        b = len(indices)
        loss = loss_fn(policy[:b], policy[b:], reference[:b], reference[b:], batch)
        stats.add(
            loss=loss, chosen_rewards=beta * (policy[:b] - reference[:b]),
            rejected_rewards=beta * (policy[b:] - reference[b:]),
            chosen_logps=policy[:b], rejected_logps=policy[b:],
        )
    return stats.means(ctx, prefix="eval/")
