"""The DPO training loop: ``train(config, callbacks=...) -> TrainResult``.

One process, or several started by a launcher, run the same code::

    python -m dpo_engine train --data pairs.jsonl --out runs/a
    torchrun --nproc-per-node 4 -m dpo_engine train --data pairs.jsonl --out runs/a
    accelerate launch --num_processes 4 -m dpo_engine train --data pairs.jsonl --out runs/a
    torchrun --nproc-per-node 8 -m dpo_engine train --fsdp --model big/model ...   # sharded policy

Each process joins the launcher's group (NCCL on GPUs, gloo on CPUs), the policy is wrapped in DDP
(or FSDP), every process takes its share of each optimiser step's pairs, and metrics are averaged
over all pairs of the step. Effective batch = batch_size x grad_accum x processes.

The schedule (optimiser, rate, warm-up, epochs, batch shape) is resolved against the number of training pairs
once they are loaded (:func:`dpo_engine.config.resolve_schedule`): the DPO paper's settings from 2000 pairs,
a small-data schedule below, any value set explicitly kept. No pair is repeated to fill a step.

Per step: pack the micro-batch's pairs (prompt shared by both completions), score the policy and
the reference, take the configured loss(es) from ``dpo_engine.losses``, back-propagate, clip, step.
Held-out pairs are scored before step 1, every ``--eval-every`` steps and after the last step; a
checkpoint follows every ``--save-every`` steps and the first step ``--save-every-minutes`` after the last.
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
from transformers import PreTrainedTokenizerBase

from dpo_engine import checkpoint
from dpo_engine.components import Reference, autocast, save_final
from dpo_engine.config import Schedule, TrainConfig, resolve_eval_every
from dpo_engine.config.schedule import step_size
from dpo_engine.data import TokenizedPair, load_pairs
from dpo_engine.distributed import DistContext, check_replicas_agree, init_distributed, wrap_data_parallel
from dpo_engine.logprobs import SequenceLogps
from dpo_engine.metrics import MetricsWriter, PairStats, evaluate, per_second
from dpo_engine.packing import pack_pairs
from dpo_engine.schedule import build_optimizer, epoch_order, linear_warmup, step_micro_batches
from dpo_engine.startup import LossFn, make_loss_fn, reference_and_policy, resolve_run_schedule, start_model
from dpo_engine.steps import accumulate_gradients, optimizer_step


@dataclass
class TrainCallbacks:
    """Optional hooks for a caller (the web app) to follow and steer a run."""

    on_metrics: Callable[[dict[str, Any]], None] | None = None
    on_progress: Callable[[int, int, float | None], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_log: Callable[[str], None] | None = None
    # Called just before a periodic (step- or time-based) checkpoint is written: a caller that buffers metrics
    # makes what it recorded durable here, so that every step a resume skips is already stored. (Flushing after
    # the save leaves a gap when the process dies between the two; flushing before merely stores steps that a
    # resume from the previous checkpoint records again.)
    before_checkpoint: Callable[[int], None] | None = None
    # Called after a periodic checkpoint is written, with its directory.
    on_checkpoint: Callable[[int, Path], None] | None = None
    # Called once, before the first step, with the resolved schedule (``Schedule.to_json()``).
    on_schedule: Callable[[dict[str, Any]], None] | None = None


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
    schedule: dict[str, Any] = field(default_factory=dict)  # the resolved ``Schedule.to_json()``


Log = Callable[[str], None]


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
    if callbacks.on_schedule and ctx.is_main:
        callbacks.on_schedule(setup.schedule.to_json())
    eval_before: dict[str, float] = setup.state["eval_before"] or _evaluate(setup)
    progress = _Progress.start(setup)
    if eval_before and setup.resumed_from is None:
        _report_eval(setup, progress, callbacks, 0, eval_before, "eval before")
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
    return _finish(setup, progress, callbacks, step, stopped, eval_before)


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
    schedule: Schedule
    eval_every: int  # steps between held-out evaluations during the run; 0: only before and after
    resumed_from: Path | None = None
    state: dict[str, Any] = field(default_factory=lambda: {"step": 0, "eval_before": {}})

    @property
    def pad(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def per_epoch(self) -> int:
        return self.schedule.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps


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
    schedule = resolve_run_schedule(config, ctx, len(train_pairs), log)
    resume_from = checkpoint.latest_checkpoint(out) if config.resume else None
    model = start_model(config, ctx, model_path, tokenizer, train_pairs, sft_dir=out / "sft", schedule=schedule,
                        resuming=resume_from is not None, dtype=dtype, log=log)
    reference, policy = reference_and_policy(config, ctx, model, {"train": train_pairs, "eval": eval_pairs},
                                             pad=tokenizer.pad_token_id, batch_size=schedule.batch_size,
                                             dtype=dtype, log=log)
    module = SequenceLogps(policy, fused=False if config.fsdp else None)
    wrapped = wrap_data_parallel(module, ctx, fsdp=config.fsdp)
    optimizer = build_optimizer(schedule.optimizer, wrapped.parameters(), lr=schedule.lr,
                                weight_decay=config.weight_decay)
    setup = _Setup(config=config, ctx=ctx, log=log, out=out, dtype=dtype, loss_fn=loss_fn, tokenizer=tokenizer,
                   train_pairs=train_pairs, eval_pairs=eval_pairs, truncated=truncated, reference=reference,
                   policy=policy, module=module, wrapped=wrapped, optimizer=optimizer,
                   scheduler=linear_warmup(optimizer, schedule.warmup_steps), schedule=schedule,
                   eval_every=resolve_eval_every(config.eval_every, schedule.total_steps) if eval_pairs else 0)
    _resume(setup, resume_from)
    return setup


def _resume(setup: _Setup, checkpoint_dir: Path | None) -> None:
    """Restore weights, optimiser, schedule and position from ``checkpoint_dir`` when ``--resume`` found one."""
    if checkpoint_dir is not None:
        setup.state = checkpoint.load_checkpoint(checkpoint_dir, model=setup.wrapped, optimizer=setup.optimizer,
                                                 scheduler=setup.scheduler, ctx=setup.ctx)
        setup.resumed_from = checkpoint_dir
        setup.log(f"resumed from {checkpoint_dir} at step {setup.state['step']}/{setup.total_steps}")
        saved_total = setup.state.get("schedule", {}).get("total_steps", setup.total_steps)
        if saved_total != setup.total_steps:
            setup.log(f"warning: the checkpoint's run had {saved_total} steps, this one resolves to "
                      f"{setup.total_steps} (different data, options or process count)")
    elif setup.config.resume:
        setup.log(f"--resume: no checkpoint under {checkpoint.checkpoint_root(setup.out)}, starting from step 0")


def _evaluate(setup: _Setup) -> dict[str, float]:
    """``eval/...`` metrics of the policy on the held-out pairs ({} without any); leaves the policy in the mode
    it found it in (a periodic evaluation runs between training steps)."""
    if not setup.eval_pairs:
        return {}
    config = setup.config
    was_training = setup.policy.training
    setup.policy.eval()
    with autocast(setup.ctx.device, setup.dtype):
        # FSDP needs its wrapper to gather shards; DDP and a single process use the bare module.
        scorer = setup.wrapped if config.fsdp else setup.module
        metrics = evaluate(setup.eval_pairs, policy_logps=scorer, reference_logps=setup.reference.for_split("eval"),
                           loss_fn=setup.loss_fn, beta=config.beta, batch_size=setup.schedule.batch_size,
                           pad_token_id=setup.pad, pack_tokens=config.pack_tokens, ctx=setup.ctx)
    setup.policy.train(was_training)
    return metrics


# --- each step ---------------------------------------------------------------------------------------------------


def _train_step(setup: _Setup, step: int) -> dict[str, Any]:
    """One optimiser step from ``step`` (steps done so far) on this process's share of its pairs; its metrics,
    averaged over every pair of the step on all processes.

    The gradient is the mean over the step's pairs: a micro-batch's mean loss weighs its share of the step's
    pairs (times the process count, as DDP and FSDP average gradients over processes). A full step's equal
    micro-batches weigh ``1 / grad_accum`` each; an epoch's smaller last step weighs each pair as much as a
    full one does, however unevenly its pairs fell across micro-batches and processes.
    """
    config, ctx, schedule = setup.config, setup.ctx, setup.schedule
    epoch, position = divmod(step, setup.per_epoch)
    shape = {"batch_size": schedule.batch_size, "grad_accum": schedule.grad_accum, "world_size": ctx.world_size}
    micro_batches = step_micro_batches(epoch_order(len(setup.train_pairs), config.seed, epoch), position,
                                       rank=ctx.rank, **shape)
    step_total = step_size(len(setup.train_pairs), position, **shape)
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

    weights = [len(indices) * ctx.world_size / step_total for indices in micro_batches]
    accumulate_gradients(setup.wrapped, micro_batches, micro_batch_loss, device=ctx.device, dtype=setup.dtype,
                         weights=weights)
    grad_norm, learning_rate = optimizer_step(setup.wrapped, setup.optimizer, setup.scheduler, config.max_grad_norm)
    elapsed = time.perf_counter() - started
    metrics: dict[str, Any] = stats.means(ctx)
    metrics.update(grad_norm=grad_norm, learning_rate=learning_rate,
                   tokens_per_second=per_second(ctx.all_reduce_sum(tokens).item(), elapsed),
                   epoch=(step + 1) / setup.per_epoch, step=step + 1, split="train")
    return metrics


@dataclass
class _Progress:
    """Where steps are reported: ``metrics.jsonl``, the progress bar, the clock behind the ETA, and the clock
    behind time-based checkpoints."""

    writer: MetricsWriter
    bar: tqdm
    first_step: int
    started: float
    last_checkpoint: float  # ``_clock()`` at the last checkpoint, or at the start of this process's steps

    @classmethod
    def start(cls, setup: _Setup) -> _Progress:
        first_step = setup.state["step"]
        resume_after = first_step if setup.resumed_from is not None else None
        writer = MetricsWriter(setup.out / "metrics.jsonl", enabled=setup.ctx.is_main, resume_after_step=resume_after)
        bar = tqdm(total=setup.total_steps, initial=first_step, desc="dpo", disable=not setup.ctx.is_main,
                   dynamic_ncols=True)
        return cls(writer, bar, first_step, time.perf_counter(), _clock())


def _clock() -> float:
    """Seconds on a monotonic clock (a function of its own, so a test can move time on)."""
    return time.monotonic()


def _after_step(setup: _Setup, progress: _Progress, callbacks: TrainCallbacks, metrics: dict[str, Any],
                eval_before: dict[str, float]) -> None:
    """Report the step (metrics file, callbacks, bar, log), then the periodic evaluation and checkpoint when due."""
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
    # The evaluation comes first, so that a caller that makes its recorded metrics durable before_checkpoint
    # records this step's evaluation with it.
    if setup.eval_every and step % setup.eval_every == 0 and step < total:
        _report_eval(setup, progress, callbacks, step, _evaluate(setup), f"eval at step {step}")
    if _checkpoint_due(setup, progress, step):
        if callbacks.before_checkpoint and is_main:
            callbacks.before_checkpoint(step)
        saved = _save_checkpoint(setup, progress, step, eval_before)
        if callbacks.on_checkpoint and is_main:
            callbacks.on_checkpoint(step, saved)


def _report_eval(setup: _Setup, progress: _Progress, callbacks: TrainCallbacks, step: int,
                 metrics: dict[str, float], label: str) -> None:
    """One held-out evaluation, as a ``{"step", "split": "eval", "eval/...": ...}`` row in metrics.jsonl, the
    ``on_metrics`` callback and the log."""
    record: dict[str, Any] = {"step": step, "split": "eval", **metrics}
    progress.writer.write(record)
    if callbacks.on_metrics and setup.ctx.is_main:
        callbacks.on_metrics(dict(record))
    setup.log(f"{label}: " + _fmt(metrics))


def _checkpoint_due(setup: _Setup, progress: _Progress, step: int) -> bool:
    """Whether a periodic checkpoint follows ``step``: every ``--save-every`` steps, or the first step ending
    ``--save-every-minutes`` after the last one. Never after the last step, which saves ``final/`` instead."""
    config, ctx = setup.config, setup.ctx
    if step >= setup.total_steps:
        return False
    by_steps = bool(config.save_every) and step % config.save_every == 0
    if not config.save_every_minutes:
        return by_steps
    late = _clock() - progress.last_checkpoint >= config.save_every_minutes * 60
    # Saving is collective: processes whose clocks disagree must still all save, or none.
    by_time = ctx.any(late) if ctx.distributed else late
    return by_steps or by_time


# --- after the last step -----------------------------------------------------------------------------------------


def _finish(setup: _Setup, progress: _Progress, callbacks: TrainCallbacks, step: int, stopped: bool,
            eval_before: dict[str, float]) -> TrainResult:
    """A stopped run leaves a checkpoint to resume from; a finished one is scored again and saved as ``final/``."""
    out, log = setup.out, setup.log
    result = TrainResult(out, None, step, stopped, eval_before, {}, setup.truncated, setup.schedule.to_json())
    if stopped:
        saved = _save_checkpoint(setup, progress, step, eval_before)
        log(f"stopped at step {step}/{setup.total_steps}; resume from {saved} with --resume")
        return result
    if setup.ctx.distributed and not setup.config.fsdp:
        log(f"replicas agree: weight checksums per rank {check_replicas_agree(setup.policy, setup.ctx)}")
    result.eval_after = _evaluate(setup)
    if result.eval_after:
        _report_eval(setup, progress, callbacks, step, result.eval_after, "eval after")
    result.final_model_dir = out / "final"
    save_final(setup.policy, setup.wrapped, setup.tokenizer, result.final_model_dir, setup.ctx)
    log(f"saved {result.final_model_dir}")
    return result


def _save_checkpoint(setup: _Setup, progress: _Progress, step: int, eval_before: dict[str, float]) -> Path:
    state = {"step": step, "eval_before": eval_before, "schedule": setup.schedule.to_json()}
    saved = checkpoint.save_checkpoint(setup.out, model=setup.wrapped, optimizer=setup.optimizer,
                                       scheduler=setup.scheduler, state=state, ctx=setup.ctx,
                                       keep=setup.config.keep_checkpoints)
    progress.last_checkpoint = _clock()
    return saved


def _fmt(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
