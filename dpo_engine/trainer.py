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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from dpo_engine import checkpoint
from dpo_engine.components import Reference, apply_lora, autocast, disable_dropout, save_final
from dpo_engine.config import TrainConfig
from dpo_engine.data import TokenizedPair, load_pairs
from dpo_engine.distributed import DistContext, check_replicas_agree, init_distributed, wrap_data_parallel
from dpo_engine.logprobs import SequenceLogps
from dpo_engine.metrics import MetricsWriter, PairStats, batches, evaluate, per_second
from dpo_engine.packing import PackedBatch, pack_pairs
from dpo_engine.schedule import build_optimizer, epoch_order, linear_warmup, step_pairs, steps_per_epoch
from dpo_engine.sft import run_sft
from dpo_engine.steps import accumulate_gradients, optimizer_step


@dataclass
class TrainCallbacks:
    """Optional hooks for a caller (the web app) to follow and steer a run."""

    on_metrics: Callable[[dict[str, Any]], None] | None = None
    on_progress: Callable[[int, int, float | None], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_log: Callable[[str], None] | None = None
    # Called after a periodic checkpoint is written: a caller that buffers metrics can make
    # what it recorded as durable as the checkpoint a resume will start from.
    on_checkpoint: Callable[[int, Path], None] | None = None


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
Log = Callable[[str], None]


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


def train(config: TrainConfig, *, callbacks: TrainCallbacks | None = None) -> TrainResult:
    """Run DPO as ``config`` says; see the module docstring for multi-process launches."""
    config.validate()
    ctx = init_distributed(config.device)
    try:
        return _train(config, callbacks or TrainCallbacks(), ctx)
    finally:
        ctx.close()


def _train(config: TrainConfig, callbacks: TrainCallbacks, ctx: DistContext) -> TrainResult:
    def log(line: str) -> None:
        if ctx.is_main:
            (callbacks.on_log or tqdm.write)(line)

    setup = _setup(config, ctx, log)
    eval_before: dict[str, float] = setup.state["eval_before"] or _evaluate(setup)
    if eval_before and setup.resumed_from is None:
        log("eval before: " + _fmt(eval_before))
    progress = _Progress.start(setup)
    step, stopped = progress.first_step, False
    setup.policy.train()
    while step < setup.total_steps:
        if ctx.any(bool(callbacks.should_stop and callbacks.should_stop())):
            stopped = True
            break
        metrics = _train_step(setup, step)
        step += 1
        _after_step(setup, progress, callbacks, metrics, eval_before)
    progress.bar.close()
    return _finish(setup, step, stopped, eval_before)


# --- before the first step ---------------------------------------------------------------------------------------


@dataclass
class _Setup:
    """What the loop works with, built once by :func:`_setup`."""

    config: TrainConfig
    ctx: DistContext
    log: Log
    out: Path
    dtype: torch.dtype
    loss_fn: LossFn
    tokenizer: PreTrainedTokenizerBase
    train_pairs: list[TokenizedPair]
    eval_pairs: list[TokenizedPair]
    truncated: int
    reference: Reference
    policy: nn.Module
    module: SequenceLogps  # the policy's log-prob scorer, unwrapped
    wrapped: nn.Module  # ``module`` inside DDP/FSDP when several processes run, else ``module`` itself
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    resumed_from: Path | None = None
    state: dict[str, Any] = field(default_factory=lambda: {"step": 0, "eval_before": {}})

    @property
    def pad(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def pairs_per_step(self) -> int:
        return self.config.batch_size * self.config.grad_accum * self.ctx.world_size

    @property
    def per_epoch(self) -> int:
        return steps_per_epoch(len(self.train_pairs), self.pairs_per_step)

    @property
    def total_steps(self) -> int:
        return self.per_epoch * self.config.epochs


def _setup(config: TrainConfig, ctx: DistContext, log: Log) -> _Setup:
    """Data, model (after the optional SFT warm start), reference, policy, optimiser, schedule and resume state."""
    from dpo_engine.models import default_dtype, load_tokenizer, resolve_model_path

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    dtype = getattr(torch, config.dtype) if config.dtype else default_dtype(ctx.device)
    loss_fn = make_loss_fn(config)
    # Data: tokenised exactly as TRL's DPOTrainer would.
    model_path = resolve_model_path(config.model)
    tokenizer = load_tokenizer(model_path)
    limits = {"max_length": config.max_length, "max_prompt_length": config.max_prompt_length}
    train_pairs, truncated = load_pairs(config.data, tokenizer, **limits)
    eval_pairs = load_pairs(config.eval_data, tokenizer, **limits)[0] if config.eval_data else []
    log(f"{len(train_pairs)} training pairs ({truncated} truncated), {len(eval_pairs)} held-out pairs")
    resume_from = checkpoint.latest_checkpoint(out) if config.resume else None
    model = _start_model(config, ctx, model_path, tokenizer, train_pairs, sft_dir=out / "sft",
                         resuming=resume_from is not None, dtype=dtype, log=log)
    reference, policy = _reference_and_policy(config, ctx, model, {"train": train_pairs, "eval": eval_pairs},
                                              pad=tokenizer.pad_token_id, dtype=dtype, log=log)
    module = SequenceLogps(policy, fused=False if config.fsdp else None)
    wrapped = wrap_data_parallel(module, ctx, fsdp=config.fsdp)
    optimizer = build_optimizer(config.optimizer, wrapped.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay)
    setup = _Setup(config=config, ctx=ctx, log=log, out=out, dtype=dtype, loss_fn=loss_fn, tokenizer=tokenizer,
                   train_pairs=train_pairs, eval_pairs=eval_pairs, truncated=truncated, reference=reference,
                   policy=policy, module=module, wrapped=wrapped, optimizer=optimizer,
                   scheduler=linear_warmup(optimizer, config.warmup_steps))
    _resume(setup, resume_from)
    return setup


def _start_model(
    config: TrainConfig,
    ctx: DistContext,
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    train_pairs: list[TokenizedPair],
    *,
    sft_dir: Path,
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
                log=log)
        model = sft_model.merge_and_unload() if config.lora_r else model  # type: ignore[operator]
        if ctx.is_main:
            model.save_pretrained(sft_dir)
            tokenizer.save_pretrained(sft_dir)
        ctx.barrier()
    return model


def _reference_and_policy(
    config: TrainConfig,
    ctx: DistContext,
    model: PreTrainedModel,
    splits: dict[str, list[TokenizedPair]],
    *,
    pad: int,
    dtype: torch.dtype,
    log: Log,
) -> tuple[Reference, nn.Module]:
    """The reference log-probs of ``config.reference_mode``, then the trainable policy (LoRA-wrapped with
    ``--lora-r``): a precomputed or frozen reference sees the start weights before any adapter exists."""
    mode = config.reference_mode
    reference: Reference
    if mode == "precomputed":
        precompute_started = time.perf_counter()
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
    return reference, policy


def _resume(setup: _Setup, checkpoint_dir: Path | None) -> None:
    """Restore weights, optimiser, schedule and position from ``checkpoint_dir`` when ``--resume`` found one."""
    if checkpoint_dir is not None:
        setup.state = checkpoint.load_checkpoint(checkpoint_dir, model=setup.wrapped, optimizer=setup.optimizer,
                                                 scheduler=setup.scheduler, ctx=setup.ctx)
        setup.resumed_from = checkpoint_dir
        setup.log(f"resumed from {checkpoint_dir} at step {setup.state['step']}/{setup.total_steps}")
    elif setup.config.resume:
        setup.log(f"--resume: no checkpoint under {checkpoint.checkpoint_root(setup.out)}, starting from step 0")


def _evaluate(setup: _Setup) -> dict[str, float]:
    """``eval/...`` metrics of the policy on the held-out pairs ({} without any)."""
    if not setup.eval_pairs:
        return {}
    config = setup.config
    setup.policy.eval()
    with autocast(setup.ctx.device, setup.dtype):
        # FSDP needs its wrapper to gather shards; DDP and a single process use the bare module.
        scorer = setup.wrapped if config.fsdp else setup.module
        return evaluate(setup.eval_pairs, policy_logps=scorer, reference_logps=setup.reference.for_split("eval"),
                        loss_fn=setup.loss_fn, beta=config.beta, batch_size=config.batch_size, pad_token_id=setup.pad,
                        pack_tokens=config.pack_tokens, ctx=setup.ctx)


# --- each step ---------------------------------------------------------------------------------------------------


def _train_step(setup: _Setup, step: int) -> dict[str, Any]:
    """One optimiser step from ``step`` (steps done so far) on this process's share of its pairs; its metrics,
    averaged over every pair of the step on all processes."""
    config, ctx = setup.config, setup.ctx
    epoch, position = divmod(step, setup.per_epoch)
    share = step_pairs(epoch_order(len(setup.train_pairs), config.seed, epoch), position,
                       pairs_per_step=setup.pairs_per_step, rank=ctx.rank, world_size=ctx.world_size)
    started = time.perf_counter()
    stats = PairStats(ctx.device)
    tokens = torch.zeros(1, device=ctx.device)
    reference = setup.reference.for_split("train")

    def micro_batch_loss(indices: list[int]) -> Tensor:
        pairs = [setup.train_pairs[j] for j in indices]
        batch = pack_pairs(pairs, pad_token_id=setup.pad, pack_tokens=config.pack_tokens).to(ctx.device)
        logps = setup.wrapped(batch).float()
        ref = reference(batch, indices)
        b = len(indices)
        loss = setup.loss_fn(logps[:b], logps[b:], ref[:b], ref[b:], batch)
        if config.sft_weight:
            chosen_tokens = batch.completion_lengths[:b].sum().clamp(min=1)
            loss = loss - config.sft_weight * logps[:b].sum() / chosen_tokens
        stats.add(loss=loss, chosen_rewards=config.beta * (logps[:b] - ref[:b]).detach(),
                  rejected_rewards=config.beta * (logps[b:] - ref[b:]).detach(),
                  chosen_logps=logps[:b], rejected_logps=logps[b:])
        # Tokens of both full sequences, as TRL counts them, so throughputs compare.
        tokens.add_(sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs))
        return loss

    micro_batches = batches(setup.train_pairs, share, config.batch_size)
    accumulate_gradients(setup.wrapped, micro_batches, micro_batch_loss, device=ctx.device, dtype=setup.dtype)
    grad_norm, learning_rate = optimizer_step(setup.wrapped, setup.optimizer, setup.scheduler, config.max_grad_norm)
    elapsed = time.perf_counter() - started
    metrics: dict[str, Any] = stats.means(ctx)
    metrics.update(grad_norm=grad_norm, learning_rate=learning_rate,
                   tokens_per_second=per_second(ctx.all_reduce_sum(tokens).item(), elapsed),
                   epoch=(step + 1) / setup.per_epoch, step=step + 1)
    return metrics


@dataclass
class _Progress:
    """Where steps are reported: ``metrics.jsonl``, the progress bar, and the clock behind the ETA."""

    writer: MetricsWriter
    bar: tqdm
    first_step: int
    started: float

    @classmethod
    def start(cls, setup: _Setup) -> _Progress:
        first_step = setup.state["step"]
        resume_after = first_step if setup.resumed_from is not None else None
        writer = MetricsWriter(setup.out / "metrics.jsonl", enabled=setup.ctx.is_main, resume_after_step=resume_after)
        bar = tqdm(total=setup.total_steps, initial=first_step, desc="dpo", disable=not setup.ctx.is_main,
                   dynamic_ncols=True)
        return cls(writer, bar, first_step, time.perf_counter())


def _after_step(setup: _Setup, progress: _Progress, callbacks: TrainCallbacks, metrics: dict[str, Any],
                eval_before: dict[str, float]) -> None:
    """Report the step (metrics file, callbacks, bar, log) and write the periodic checkpoint when one is due."""
    config, is_main = setup.config, setup.ctx.is_main
    step, total = metrics["step"], setup.total_steps
    progress.writer.write(metrics)
    if callbacks.on_metrics and is_main:
        callbacks.on_metrics(dict(metrics))
    eta = (time.perf_counter() - progress.started) / (step - progress.first_step) * (total - step)
    progress.bar.update(1)
    progress.bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['rewards/accuracies']:.2f}")
    if callbacks.on_progress and is_main:
        callbacks.on_progress(step, total, eta)
    if step % config.log_every == 0:
        setup.log(f"step {step}/{total} " + _fmt(metrics))
    if config.save_every and step % config.save_every == 0 and step < total:
        saved = _save_checkpoint(setup, step, eval_before)
        if callbacks.on_checkpoint and is_main:
            callbacks.on_checkpoint(step, saved)


# --- after the last step -----------------------------------------------------------------------------------------


def _finish(setup: _Setup, step: int, stopped: bool, eval_before: dict[str, float]) -> TrainResult:
    """A stopped run leaves a checkpoint to resume from; a finished one is scored again and saved as ``final/``."""
    out, log = setup.out, setup.log
    if stopped:
        saved = _save_checkpoint(setup, step, eval_before)
        log(f"stopped at step {step}/{setup.total_steps}; resume from {saved} with --resume")
        return TrainResult(out, None, step, True, eval_before, {}, setup.truncated)
    if setup.ctx.distributed and not setup.config.fsdp:
        log(f"replicas agree: weight checksums per rank {check_replicas_agree(setup.policy, setup.ctx)}")
    eval_after = _evaluate(setup)
    if eval_after:
        log("eval after: " + _fmt(eval_after))
    final_dir = out / "final"
    save_final(setup.policy, setup.wrapped, setup.tokenizer, final_dir, setup.ctx)
    log(f"saved {final_dir}")
    return TrainResult(out, final_dir, step, False, eval_before, eval_after, setup.truncated)


def _save_checkpoint(setup: _Setup, step: int, eval_before: dict[str, float]) -> Path:
    return checkpoint.save_checkpoint(setup.out, model=setup.wrapped, optimizer=setup.optimizer,
                                      scheduler=setup.scheduler, state={"step": step, "eval_before": eval_before},
                                      ctx=setup.ctx, keep=setup.config.keep_checkpoints)


def _fmt(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
