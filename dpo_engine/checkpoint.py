"""Resumable checkpoints: trainable weights, optimiser, scheduler, position in the data, RNG states.

Layout of ``OUT/checkpoints/step-00000120/``: ``weights.pt`` (every trainable tensor: the whole model
for a full fine-tune, the LoRA adapter otherwise), ``optimizer.pt``, ``scheduler.pt``, ``state.json``
(step, metrics needed to continue) and ``rng-rank{R}.pt`` per process. A checkpoint is written to a
temporary folder and renamed, so a crash never leaves a half-written one behind.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from dpo_engine.distributed import DistContext

# Checkpoint folder names; zero-padded so that sorting the names sorts the steps.
_STEP_DIR = "step-{:08d}"
_OPTIONS = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)


def checkpoint_root(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``OUT/checkpoints``, or None."""
    root = checkpoint_root(out_dir)
    found = sorted(p for p in root.glob("step-*") if (p / "state.json").exists()) if root.exists() else []
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out_dir: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    ctx: DistContext,
    keep: int,
) -> Path:
    """Write a checkpoint for ``state["step"]`` (collective: every process calls it); keep the newest ``keep``."""
    root = checkpoint_root(out_dir)
    final = root / _STEP_DIR.format(state["step"])
    tmp = root / f".tmp-{final.name}"
    weights = get_model_state_dict(model, options=_OPTIONS)
    optim = get_optimizer_state_dict(model, optimizer, options=_OPTIONS)
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    ctx.barrier()
    torch.save(rng_state(), tmp / f"rng-rank{ctx.rank}.pt")
    if ctx.is_main:
        torch.save(weights, tmp / "weights.pt")
        torch.save(optim, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
    ctx.barrier()
    if ctx.is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        existing = sorted(root.glob("step-*"))
        for old in existing[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    ctx.barrier()
    return final


def load_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ctx: DistContext,
) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote; return its ``state`` dict."""
    weights = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
    optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    set_optimizer_state_dict(model, optimizer, optim, options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / f"rng-rank{ctx.rank}.pt"
    if rng_file.exists():
        set_rng_state(torch.load(rng_file, weights_only=False))
    state: dict[str, Any] = json.loads((path / "state.json").read_text())
    return state
