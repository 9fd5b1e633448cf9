"""Duet's DPO engine: plain PyTorch + transformers, no Django.

Public API (imports are lazy, so ``import dpo_engine`` stays cheap)::

    from dpo_engine import TrainCallbacks, TrainConfig, train

    result = train(TrainConfig(data="pairs.jsonl", out="runs/a"), callbacks=TrainCallbacks(on_metrics=print))
    result.final_model_dir  # AutoModelForCausalLM.from_pretrained(...) loads it

The command line is ``python -m dpo_engine train|generate --help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpo_engine.config import GenerateConfig, TrainConfig
    from dpo_engine.trainer import TrainCallbacks, TrainResult, train

__all__ = ["GenerateConfig", "TrainCallbacks", "TrainConfig", "TrainResult", "train"]


def __getattr__(name: str) -> Any:
    if name in ("GenerateConfig", "TrainConfig"):
        from dpo_engine import config

        return getattr(config, name)
    if name in ("TrainCallbacks", "TrainResult", "train"):
        from dpo_engine import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'dpo_engine' has no attribute {name!r}")
