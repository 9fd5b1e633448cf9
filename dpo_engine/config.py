"""The one typed configuration of a DPO run, and the command-line options built from it.

Every field carries its help text in ``metadata["help"]``; :func:`add_config_arguments` turns the
dataclass into ``argparse`` options (``--max-prompt-length`` for ``max_prompt_length``), so the CLI,
the Python API and ``--help`` can never disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

ReferenceMode = Literal["auto", "frozen", "adapter-disabled", "precomputed"]
OptimizerName = Literal["rmsprop", "adamw"]
DtypeName = Literal["float32", "bfloat16"]

# Same value as ``dpo_engine.models.DEFAULT_MODEL``; repeated so that building the CLI imports no torch.
DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass
class TrainConfig:
    """Everything a DPO run needs; defaults follow the DPO paper (RMSprop, lr 1e-6, 150 warm-up steps, batch 64)."""

    data: str = field(
        metadata={"help": "Training preference pairs (prompt/chosen/rejected): a .jsonl file, a .parquet file "
                  "or a datasets.save_to_disk folder.", "required": True}
    )
    eval_data: str | None = field(
        default=None, metadata={"help": "Held-out pairs, same formats; scored before and after training."}
    )
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Starting model: the default SmolLM2 name, a Hugging Face id or a local folder."},
    )
    out: str = field(default="runs/dpo", metadata={"help": "Output folder: metrics.jsonl, checkpoints/, final/."})
    loss: list[str] = field(
        default_factory=lambda: ["sigmoid"],
        metadata={"help": "One or more losses from dpo_engine.losses.LOSSES (sigmoid, ipo, hinge, robust, "
                  "sppo_hard, nca_pair, apo_zero, sigmoid_norm); several are combined by --loss-weights."},
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per --loss entry (default: 1 each)."}
    )
    beta: float = field(
        default=0.1, metadata={"help": "DPO temperature beta: strength of the KL tie to the reference."}
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "Assumed label-noise rate (conservative DPO with the sigmoid loss)."}
    )
    sft_weight: float = field(
        default=0.0, metadata={"help": "Weight of an extra mean per-token NLL term on the chosen completions."}
    )
    reference: ReferenceMode = field(
        default="auto",
        metadata={"help": "Reference log-probs: 'frozen' copy of the start model, 'adapter-disabled' (LoRA only, "
                  "no second copy), 'precomputed' once before step 1 with the start weights (no second copy, "
                  "one pass however many epochs); 'auto' = adapter-disabled with LoRA, else precomputed."},
    )
    sft_epochs: int = field(
        default=0,
        metadata={"help": "Epochs of maximum-likelihood training on (prompt, chosen) first; the result is both "
                  "the starting policy and the reference."},
    )
    sft_lr: float = field(default=1e-5, metadata={"help": "Learning rate of the SFT phase."})
    optimizer: OptimizerName = field(default="rmsprop", metadata={"help": "Optimiser (the DPO paper uses RMSprop)."})
    lr: float = field(default=1e-6, metadata={"help": "Peak learning rate (paper: 1e-6)."})
    weight_decay: float = field(default=0.0, metadata={"help": "Decoupled weight decay (adamw only)."})
    warmup_steps: int = field(
        default=150, metadata={"help": "Linear warm-up from 0 to --lr over this many optimiser steps, then constant."}
    )
    epochs: int = field(default=1, metadata={"help": "Passes over the training pairs."})
    batch_size: int = field(default=8, metadata={"help": "Pairs per micro-batch on each process."})
    grad_accum: int = field(
        default=8,
        metadata={"help": "Micro-batches per optimiser step; effective batch = batch-size x grad-accum x processes "
                  "(paper: 64)."},
    )
    max_grad_norm: float = field(
        default=10.0, metadata={"help": "Clip the global gradient norm to this value (0 disables clipping)."}
    )
    max_length: int | None = field(
        default=512, metadata={"help": "Max tokens of prompt + completion; longer completions keep their start."}
    )
    max_prompt_length: int | None = field(
        default=256, metadata={"help": "Max prompt tokens when a pair is too long; longer prompts keep their end."}
    )
    pack_tokens: int = field(
        default=512,
        metadata={"help": "Token budget of one packed row (pairs are never split; a longer pair gets its own row). "
                  "Attention is computed over whole rows, so longer rows cost quadratically more."},
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains all weights."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scaling = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "Module names that get LoRA adapters ('all-linear' = every linear layer but the head)."},
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass to save memory."}
    )
    fsdp: bool = field(
        default=False,
        metadata={"help": "Shard the policy with FSDP across processes (large models; launch with torchrun)."},
    )
    seed: int = field(default=42, metadata={"help": "Seed of data order, initialisation and dropout."})
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N optimiser steps (0: never)."})
    keep_checkpoints: int = field(default=2, metadata={"help": "How many recent checkpoints to keep."})
    resume: bool = field(
        default=False, metadata={"help": "Continue from the newest checkpoint in OUT/checkpoints."}
    )
    device: str | None = field(default=None, metadata={"help": "Device override (cpu, cuda, cuda:1); default: auto."})
    dtype: DtypeName | None = field(
        default=None,
        metadata={"help": "Compute dtype (autocast; weights stay float32); default bfloat16 on CUDA, float32 on CPU."},
    )
    log_every: int = field(default=1, metadata={"help": "Write a log line every N optimiser steps."})

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent option."""
        positive = ("batch_size", "grad_accum", "epochs", "log_every", "pack_tokens")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("sft_epochs", "warmup_steps", "save_every", "lora_r", "max_grad_norm", "sft_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{_flag(name)} must not be negative, got {getattr(self, name)}")
        if not self.loss:
            raise ValueError("--loss needs at least one loss name")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss):
            raise ValueError(f"--loss-weights has {len(self.loss_weights)} values for {len(self.loss)} losses")
        if self.beta <= 0:
            raise ValueError(f"--beta must be positive, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.fsdp and self.lora_r > 0:
            raise ValueError("--fsdp shards full fine-tuning; LoRA runs use DDP (drop --fsdp)")
        if self.reference == "adapter-disabled" and self.lora_r == 0:
            raise ValueError("--reference adapter-disabled needs LoRA (--lora-r > 0)")
        limits = (self.max_prompt_length, self.max_length)
        if limits[0] is not None and limits[1] is not None and limits[0] >= limits[1]:
            raise ValueError(
                    f"--max-prompt-length ({self.max_prompt_length}) must be below --max-length ({self.max_length})"
                )

    @property
    def reference_mode(self) -> str:
        """The resolved reference mode (``auto`` picks adapter-disabled with LoRA, precomputed otherwise)."""
        if self.reference == "auto":
            return "adapter-disabled" if self.lora_r > 0 else "precomputed"
        return self.reference


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    exclude: Collection[str] = (),
    only_given: bool = False,
) -> None:
    """Add one option per :class:`TrainConfig` field, typed and documented from the dataclass.

    ``exclude`` leaves fields out (a caller that sets them itself); with ``only_given`` an option the
    user did not type is absent from the parsed namespace, so a caller can pass on just the overrides.
    """
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata["help"]}
        required = bool(f.metadata.get("required"))
        if required:
            kwargs["required"] = True
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            kwargs["default"] = argparse.SUPPRESS if only_given else default
            kwargs["help"] += f" (default: {default})" if only_given else " (default: %(default)s)"
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(tp) is Literal:
            kwargs["choices"] = list(get_args(tp))
        elif get_origin(tp) is list:
            kwargs["nargs"] = "+"
            kwargs["type"] = get_args(tp)[0]
        else:
            kwargs["type"] = _none_or(tp) if optional else tp
        parser.add_argument(f"--{_flag(f.name)}", **kwargs)


def _none_or(tp: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that also accepts ``none`` (to switch off an optional limit such as --max-length)."""

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else tp(text)

    parse.__name__ = getattr(tp, "__name__", "value")
    return parse


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from parsed options."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**values)
    config.validate()
    return config
