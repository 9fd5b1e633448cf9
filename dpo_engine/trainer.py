"""The DPO training loop: ``train(config, callbacks=...) -> TrainResult``.

One process, or several started by a launcher, run the same code::

    python -m dpo_engine train --data pairs.jsonl --out runs/a
    torchrun --nproc-per-node 4 -m dpo_engine train --data pairs.jsonl --out runs/a
    accelerate launch --num_processes 4 -m dpo_engine train --data pairs.jsonl --out runs/a
    torchrun --nproc-per-node 8 -m dpo_engine train --fsdp --model big/model ...   # sharded policy

Each process joins the launcher's group (NCCL on GPUs, gloo on CPUs), the policy is wrapped in DDP
(or FSDP), every process takes its share of each optimiser step's pairs, and metrics are averaged
over all pairs of the step. Effective batch = batch_size x grad_accum x processes.

Per step: pack the micro-batch's pairs (prompt shared by both completions), score the policy and
the reference, take the configured loss(es) from ``dpo_engine.losses``, back-propagate, clip, step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from dpo_engine import checkpoint
from dpo_engine.components import Reference, apply_lora, autocast, disable_dropout, save_final
from dpo_engine.config import TrainConfig
from dpo_engine.data import load_pairs
from dpo_engine.distributed import DistContext, check_replicas_agree, init_distributed, wrap_data_parallel
from dpo_engine.logprobs import SequenceLogps
from dpo_engine.metrics import MetricsWriter, PairStats, batches, evaluate
from dpo_engine.packing import PackedBatch, pack_pairs
from dpo_engine.schedule import build_optimizer, epoch_order, linear_warmup, step_pairs, steps_per_epoch
from dpo_engine.sft import run_sft


@dataclass
class TrainCallbacks:
    """Optional hooks for a caller (the web app) to follow and steer a run."""

    on_metrics: Callable[[dict[str, Any]], None] | None = None
    on_progress: Callable[[int, int, float | None], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_log: Callable[[str], None] | None = None


@dataclass
class TrainResult:
    """What a run produced. ``final_model_dir`` is None when the run was stopped early."""

    out_dir: Path
    final_model_dir: Path | None
    steps: int
    stopped: bool
    eval_before: dict[str, float] = field(default_factory=dict)
    eval_after: dict[str, float] = field(default_factory=dict)
    truncated_records: int = 0


LossFn = Callable[[Tensor, Tensor, Tensor, Tensor, PackedBatch], Tensor]


def make_loss_fn(config: TrainConfig) -> LossFn:
    """The configured (weighted) DPO loss of a micro-batch, from the loss registry."""
    from dpo_engine.losses import LOSSES, LossInputs, compute_loss

    unknown = [name for name in config.loss if name not in LOSSES]
    if unknown:
        raise ValueError(f"unknown loss {', '.join(unknown)}: choose from {', '.join(sorted(LOSSES))}")

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


def train(config: TrainConfig, *, callbacks: TrainCallbacks | None = None) -> TrainResult:
    """Run DPO as ``config`` says; see the module docstring for multi-process launches."""
    config.validate()
    ctx = init_distributed(config.device)
    try:
        return _train(config, callbacks or TrainCallbacks(), ctx)
    finally:
        ctx.close()


def _train(config: TrainConfig, callbacks: TrainCallbacks, ctx: DistContext) -> TrainResult:
    from dpo_engine.models import default_dtype, load_model, load_tokenizer, resolve_model_path

    def log(line: str) -> None:
        if ctx.is_main:
            (callbacks.on_log or tqdm.write)(line)

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    dtype = getattr(torch, config.dtype) if config.dtype else default_dtype(ctx.device)
    loss_fn = make_loss_fn(config)

    # Data: tokenised exactly as TRL's DPOTrainer would.
    model_path = resolve_model_path(config.model)
    tokenizer = load_tokenizer(model_path)
    pad = tokenizer.pad_token_id
    limits = {"max_length": config.max_length, "max_prompt_length": config.max_prompt_length}
    train_pairs, truncated = load_pairs(config.data, tokenizer, **limits)
    eval_pairs = load_pairs(config.eval_data, tokenizer, **limits)[0] if config.eval_data else []
    log(f"{len(train_pairs)} training pairs ({truncated} truncated), {len(eval_pairs)} held-out pairs")

    # Model: optional SFT phase, whose result is both the start and the reference (kept on disk for resume).
    resume_from = checkpoint.latest_checkpoint(out) if config.resume else None
    sft_dir = out / "sft"
    if config.sft_epochs and resume_from is not None and (sft_dir / "config.json").exists():
        model_path = str(sft_dir)
    model = load_model(model_path, device=ctx.device, dtype=torch.float32)
    disable_dropout(model)
    if config.sft_epochs and model_path != str(sft_dir):
        sft_model = apply_lora(model, config) if config.lora_r else model
        run_sft(sft_model, train_pairs, config=config, ctx=ctx, pad_token_id=pad, dtype=dtype, log=log)
        model = sft_model.merge_and_unload() if config.lora_r else model  # type: ignore[operator]
        if ctx.is_main:
            model.save_pretrained(sft_dir)
            tokenizer.save_pretrained(sft_dir)
        ctx.barrier()

    # Reference, then the trainable policy.
    mode = config.reference_mode
    reference: Reference
    if mode == "precomputed":
        precompute_started = time.perf_counter()
        splits = {"train": train_pairs, "eval": eval_pairs}
        reference = Reference.precomputed(model, splits, batch_size=config.batch_size, pad_token_id=pad,
                                          pack_tokens=config.pack_tokens, ctx=ctx, dtype=dtype)
        log(f"precomputed reference log-probs in {time.perf_counter() - precompute_started:.1f}s")
    elif mode == "frozen":
        reference = Reference.frozen(model, device=ctx.device, dtype=dtype)
    policy: nn.Module = apply_lora(model, config) if config.lora_r else model
    if mode == "adapter-disabled":
        reference = Reference.adapter_disabled(policy, device=ctx.device, dtype=dtype)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module = SequenceLogps(policy, fused=False if config.fsdp else None)
    wrapped = wrap_data_parallel(module, ctx, fsdp=config.fsdp)
    optimizer = build_optimizer(config.optimizer, wrapped.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay)
    scheduler = linear_warmup(optimizer, config.warmup_steps)

    pairs_per_step = config.batch_size * config.grad_accum * ctx.world_size
    per_epoch = steps_per_epoch(len(train_pairs), pairs_per_step)
    total_steps = per_epoch * config.epochs
    state: dict[str, Any] = {"step": 0, "eval_before": {}}
    if resume_from is not None:
        state = checkpoint.load_checkpoint(resume_from, model=wrapped, optimizer=optimizer, scheduler=scheduler,
                                           ctx=ctx)
        log(f"resumed from {resume_from} at step {state['step']}/{total_steps}")
    elif config.resume:
        log(f"--resume: no checkpoint under {checkpoint.checkpoint_root(out)}, starting from step 0")

    def run_eval() -> dict[str, float]:
        if not eval_pairs:
            return {}
        policy.eval()
        with autocast(ctx.device, dtype):
            # FSDP needs its wrapper to gather shards; DDP and a single process use the bare module.
            scorer = wrapped if config.fsdp else module
            result = evaluate(eval_pairs, policy_logps=scorer, reference_logps=reference.for_split("eval"),
                              loss_fn=loss_fn, beta=config.beta, batch_size=config.batch_size,
                              pad_token_id=pad, pack_tokens=config.pack_tokens, ctx=ctx)
        return result

    eval_before: dict[str, float] = state["eval_before"] or run_eval()
    if eval_before and resume_from is None:
        log("eval before: " + _fmt(eval_before))
    writer = MetricsWriter(out / "metrics.jsonl", enabled=ctx.is_main,
                           resume_after_step=state["step"] if resume_from is not None else None)
    reference_train = reference.for_split("train")

    first_step = state["step"]
    step, stopped = first_step, False
    bar = tqdm(total=total_steps, initial=first_step, desc="dpo", disable=not ctx.is_main, dynamic_ncols=True)
    started = time.perf_counter()
    policy.train()
    while step < total_steps:
        if ctx.any(bool(callbacks.should_stop and callbacks.should_stop())):
            stopped = True
            break
        epoch, position = divmod(step, per_epoch)
        share = step_pairs(epoch_order(len(train_pairs), config.seed, epoch), position,
                           pairs_per_step=pairs_per_step, rank=ctx.rank, world_size=ctx.world_size)
        step_started = time.perf_counter()
        stats = PairStats(ctx.device)
        tokens = torch.zeros(1, device=ctx.device)
        micro = batches(train_pairs, share, config.batch_size)
        for i, indices in enumerate(micro):
            pairs = [train_pairs[j] for j in indices]
            batch = pack_pairs(pairs, pad_token_id=pad, pack_tokens=config.pack_tokens).to(ctx.device)
            # Gradients are all-reduced once per optimiser step, on the last micro-batch.
            sync = i == len(micro) - 1 or not hasattr(wrapped, "no_sync")
            with wrapped.no_sync() if not sync else nullcontext(), autocast(ctx.device, dtype):  # type: ignore[operator]
                logps = wrapped(batch).float()
                ref = reference_train(batch, indices)
                b = len(indices)
                loss = loss_fn(logps[:b], logps[b:], ref[:b], ref[b:], batch)
                if config.sft_weight:
                    chosen_tokens = batch.completion_lengths[:b].sum().clamp(min=1)
                    loss = loss - config.sft_weight * logps[:b].sum() / chosen_tokens
            (loss / len(micro)).backward()
            stats.add(loss=loss, chosen_rewards=config.beta * (logps[:b] - ref[:b]).detach(),
                      rejected_rewards=config.beta * (logps[b:] - ref[b:]).detach(),
                      chosen_logps=logps[:b], rejected_logps=logps[b:])
            # Tokens of both full sequences, as TRL counts them, so throughputs compare.
            tokens += sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
        grad_norm = _clip(wrapped, config.max_grad_norm)
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        elapsed = time.perf_counter() - step_started
        metrics: dict[str, Any] = stats.means(ctx)
        metrics.update(grad_norm=grad_norm, learning_rate=learning_rate,
                       tokens_per_second=ctx.all_reduce_sum(tokens).item() / max(elapsed, 1e-9),
                       epoch=step / per_epoch, step=step)
        writer.write(metrics)
        if callbacks.on_metrics and ctx.is_main:
            callbacks.on_metrics(dict(metrics))
        eta = (time.perf_counter() - started) / (step - first_step) * (total_steps - step)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['rewards/accuracies']:.2f}")
        if callbacks.on_progress and ctx.is_main:
            callbacks.on_progress(step, total_steps, eta)
        if step % config.log_every == 0:
            log(f"step {step}/{total_steps} " + _fmt(metrics))
        if config.save_every and step % config.save_every == 0 and step < total_steps:
            checkpoint.save_checkpoint(out, model=wrapped, optimizer=optimizer, scheduler=scheduler,
                                       state={"step": step, "eval_before": eval_before}, ctx=ctx,
                                       keep=config.keep_checkpoints)
    bar.close()

    if stopped:
        saved = checkpoint.save_checkpoint(out, model=wrapped, optimizer=optimizer, scheduler=scheduler,
                                           state={"step": step, "eval_before": eval_before}, ctx=ctx,
                                           keep=config.keep_checkpoints)
        log(f"stopped at step {step}/{total_steps}; resume from {saved} with --resume")
        return TrainResult(out, None, step, True, eval_before, {}, truncated)

    if ctx.distributed and not config.fsdp:
        log(f"replicas agree: weight checksums per rank {check_replicas_agree(policy, ctx)}")
    eval_after = run_eval()
    if eval_after:
        log("eval after: " + _fmt(eval_after))
    final_dir = out / "final"
    save_final(policy, wrapped, tokenizer, final_dir, ctx)
    log(f"saved {final_dir}")
    return TrainResult(out, final_dir, step, False, eval_before, eval_after, truncated)


def _clip(wrapped: nn.Module, max_norm: float) -> float:
    """Clip (when ``max_norm`` > 0) and return the global gradient norm before clipping."""
    params = [p for p in wrapped.parameters() if p.grad is not None]
    fsdp: Any = wrapped
    if hasattr(fsdp, "clip_grad_norm_"):  # FSDP: the norm spans all shards
        return float(fsdp.clip_grad_norm_(max_norm if max_norm > 0 else float("inf")))
    return float(nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf")))


def _fmt(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
