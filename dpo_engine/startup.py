"""What a DPO run starts from, once its pairs are loaded: the loss, the resolved schedule, the start model
(after the optional SFT warm start), the reference log-probs and the trainable policy."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from dpo_engine.components import Reference, apply_lora, disable_dropout
from dpo_engine.config import SCHEDULE_FIELDS, Schedule, TrainConfig, resolve_schedule
from dpo_engine.data import DataError, TokenizedPair
from dpo_engine.distributed import DistContext
from dpo_engine.packing import PackedBatch
from dpo_engine.sft import run_sft

Log = Callable[[str], None]
LossFn = Callable[[Tensor, Tensor, Tensor, Tensor, PackedBatch], Tensor]


def make_loss_fn(config: TrainConfig) -> LossFn:
    """The configured (weighted) DPO loss of a micro-batch, from the loss registry (``config.validate()`` has
    checked the names against it)."""
    from dpo_engine.losses import LossInputs, compute_loss

    def loss_fn(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, batch: PackedBatch
                ) -> Tensor:
        b = chosen.shape[0]
        lengths = batch.completion_lengths.to(chosen.device)
        inputs = LossInputs(
            policy_chosen_logps=chosen, policy_rejected_logps=rejected,
            ref_chosen_logps=ref_chosen, ref_rejected_logps=ref_rejected,
            chosen_lengths=lengths[:b], rejected_lengths=lengths[b:],
            beta=config.beta, label_smoothing=config.label_smoothing,
        )
        return compute_loss(inputs, config.loss, config.loss_weights)

    return loss_fn


def resolve_run_schedule(config: TrainConfig, ctx: DistContext, pairs: int, log: Log) -> Schedule:
    """The run's schedule on ``pairs`` training pairs (fields left None resolved, given ones kept), logged."""
    if pairs < ctx.world_size:
        raise DataError(f"{config.data}: {pairs} training pairs, but a run on {ctx.world_size} processes needs "
                        "at least one per process")
    given = {name: getattr(config, name) for name in SCHEDULE_FIELDS}
    schedule = resolve_schedule(pairs=pairs, given=given, world_size=ctx.world_size)
    log("schedule: " + " ".join(f"{k}={v}" for k, v in schedule.to_json().items() if k != "notes"))
    for note in schedule.notes:
        log(f"schedule: {note}")
    return schedule


def start_model(
    config: TrainConfig,
    ctx: DistContext,
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    train_pairs: list[TokenizedPair],
    *,
    sft_dir: Path,
    schedule: Schedule,
    resuming: bool,
    dtype: torch.dtype,
    log: Log,
) -> PreTrainedModel:
    """The start weights, after the SFT warm start when ``--sft-epochs`` asks for one. Its result, both the start
    and the reference, is kept in ``sft_dir`` so that a resumed run starts from it instead of repeating it."""
    from dpo_engine.models import load_model

    if config.sft_epochs and resuming and (sft_dir / "config.json").exists():
        model_path = str(sft_dir)
    model = load_model(model_path, device=ctx.device, dtype=torch.float32)
    disable_dropout(model)
    if config.sft_epochs and model_path != str(sft_dir):
        sft_model = apply_lora(model, config) if config.lora_r else model
        run_sft(sft_model, train_pairs, config=config, ctx=ctx, pad_token_id=tokenizer.pad_token_id, dtype=dtype,
                log=log, schedule=schedule)
        model = sft_model.merge_and_unload() if config.lora_r else model  # type: ignore[operator]
        if ctx.is_main:
            model.save_pretrained(sft_dir)
            tokenizer.save_pretrained(sft_dir)
        ctx.barrier()
    return model


def reference_and_policy(
    config: TrainConfig,
    ctx: DistContext,
    model: PreTrainedModel,
    splits: dict[str, list[TokenizedPair]],
    *,
    pad: int,
    batch_size: int,
    dtype: torch.dtype,
    log: Log,
) -> tuple[Reference, nn.Module]:
    """The reference log-probs of ``config.reference_mode``, then the trainable policy (LoRA-wrapped with
    ``--lora-r``): a precomputed or frozen reference sees the start weights before any adapter exists."""
    mode = config.reference_mode
    reference: Reference
    if mode == "precomputed":
        precompute_started = time.perf_counter()
        reference = Reference.precomputed(model, splits, batch_size=batch_size, pad_token_id=pad,
                                          pack_tokens=config.pack_tokens, ctx=ctx, dtype=dtype)
        log(f"precomputed reference log-probs in {time.perf_counter() - precompute_started:.1f}s")
    elif mode == "frozen":
        reference = Reference.frozen(model, device=ctx.device, dtype=dtype)
    policy: nn.Module = apply_lora(model, config) if config.lora_r else model
    if mode == "adapter-disabled":
        reference = Reference.adapter_disabled(policy, device=ctx.device, dtype=dtype)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return reference, policy
