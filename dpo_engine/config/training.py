"""The one typed configuration of a DPO run: every field with its help, and its bounds where it has any."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dpo_engine.config.fields import ConfigError, check_config
from dpo_engine.config.schedule import (
    EVAL_EVERY_DIVISOR,
    EVAL_EVERY_MIN,
    EVAL_EVERY_MIN_STEPS,
    MICRO_BATCH_MAX,
    PAPER_EFFECTIVE_BATCH,
    PAPER_EPOCHS,
    PAPER_LR,
    PAPER_MIN_PAIRS,
    PAPER_OPTIMIZER,
    PAPER_WARMUP_STEPS,
    SMALL_BATCH_MAX,
    SMALL_BATCH_MIN,
    SMALL_EPOCHS,
    SMALL_LR,
    SMALL_MIN_STEPS_PER_EPOCH,
    SMALL_OPTIMIZER,
    SMALL_WARMUP_PERCENT,
)

ReferenceMode = Literal["auto", "frozen", "adapter-disabled", "precomputed"]
OptimizerName = Literal["rmsprop", "adamw"]
DtypeName = Literal["float32", "bfloat16"]

# The built-in model (``dpo_engine.models.BUILTIN_MODELS`` ships it): the start of a run or a generation.
DEFAULT_MODEL = "smollm2-135m-instruct"

# The names of ``dpo_engine.losses.LOSSES``, kept here so that validating a config imports no torch; a test
# holds the two equal.
LOSS_NAMES = ("sigmoid", "ipo", "hinge", "robust", "sppo_hard", "nca_pair", "apo_zero", "sigmoid_norm")

# Highest seed: fits the app's signed 32-bit database columns, and keeps ``schedule.epoch_order``'s
# ``seed * 1_000_003 + epoch`` inside a torch generator's 64-bit seed.
SEED_MAX = 2**31 - 1


@dataclass
class TrainConfig:
    """Everything a DPO run needs. The schedule fields (optimizer, lr, warmup_steps, epochs, batch_size,
    grad_accum) default to None, "auto": :func:`~dpo_engine.config.schedule.resolve_schedule` picks them from the
    number of training pairs (the DPO paper's settings from 2000 pairs, a small-data schedule below); a value
    set explicitly wins."""

    data: str = field(
        metadata={"help": "Training preference pairs (prompt/chosen/rejected): a .jsonl file, a .parquet file "
                  "or a datasets.save_to_disk folder."}
    )
    eval_data: str | None = field(
        default=None,
        metadata={"help": "Held-out pairs, same formats; scored before training, every --eval-every steps and "
                  "after training."},
    )
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Starting model: the default SmolLM2 name, a Hugging Face id or a local folder."},
    )
    out: str = field(default="runs/dpo", metadata={"help": "Output folder: metrics.jsonl, checkpoints/, final/."})
    loss: list[str] = field(
        default_factory=lambda: ["sigmoid"],
        metadata={"help": f"One or more losses from dpo_engine.losses.LOSSES ({', '.join(LOSS_NAMES)}); several "
                  "are combined by --loss-weights.", "choices": LOSS_NAMES},
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per --loss entry (default: 1 each)."}
    )
    beta: float = field(
        default=0.1,
        metadata={"help": "DPO temperature beta: strength of the KL tie to the reference.", "min": 0,
                  "min_exclusive": True},
    )
    label_smoothing: float = field(
        default=0.0,
        metadata={"help": "Assumed label-noise rate (conservative DPO with the sigmoid loss).", "min": 0,
                  "max": 0.5, "max_exclusive": True},
    )
    sft_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of an extra mean per-token NLL term on the chosen completions.", "min": 0},
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
                  "the starting policy and the reference.", "min": 0},
    )
    sft_lr: float = field(
        default=1e-5, metadata={"help": "Learning rate of the SFT phase.", "min": 0, "min_exclusive": True}
    )
    optimizer: OptimizerName | None = field(
        default=None,
        metadata={"help": f"Optimiser; auto: {PAPER_OPTIMIZER} (the DPO paper's) from {PAPER_MIN_PAIRS} training "
                  f"pairs, {SMALL_OPTIMIZER} below (it makes progress in tens of steps).", "auto": True},
    )
    lr: float | None = field(
        default=None,
        metadata={"help": f"Peak learning rate; auto: {PAPER_LR:g} (the paper's) from {PAPER_MIN_PAIRS} training "
                  f"pairs, {SMALL_LR:g} below.", "min": 0, "min_exclusive": True, "auto": True},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "Decoupled weight decay (adamw only).", "min": 0})
    warmup_steps: int | None = field(
        default=None,
        metadata={"help": "Linear warm-up from 0 to --lr over this many optimiser steps, then constant; auto: "
                  f"{PAPER_WARMUP_STEPS} (the paper's) from {PAPER_MIN_PAIRS} training pairs, "
                  f"{SMALL_WARMUP_PERCENT}% of the run's steps (at least 1) below.", "min": 0, "auto": True},
    )
    epochs: int | None = field(
        default=None,
        metadata={"help": f"Passes over the training pairs; auto: {PAPER_EPOCHS} from {PAPER_MIN_PAIRS} training "
                  f"pairs (the paper's), {SMALL_EPOCHS} below.", "min": 1, "auto": True},
    )
    batch_size: int | None = field(
        default=None,
        metadata={"help": f"Pairs per micro-batch on each process; auto: at most {MICRO_BATCH_MAX}, so that "
                  "batch-size x grad-accum x processes makes the effective batch (see --grad-accum).", "min": 1,
                  "auto": True},
    )
    grad_accum: int | None = field(
        default=None,
        metadata={"help": "Micro-batches per optimiser step; effective batch = batch-size x grad-accum x processes. "
                  f"Auto: the paper's {PAPER_EFFECTIVE_BATCH} from {PAPER_MIN_PAIRS} training pairs; below, the "
                  f"largest power of two <= pairs/{SMALL_MIN_STEPS_PER_EPOCH} within [{SMALL_BATCH_MIN}, "
                  f"{SMALL_BATCH_MAX}] and never more than the pairs. An epoch's last step takes only the pairs "
                  "left; no pair is repeated.", "min": 1, "auto": True},
    )
    max_grad_norm: float = field(
        default=10.0,
        metadata={"help": "Clip the global gradient norm to this value (0 disables clipping).", "min": 0},
    )
    max_length: int | None = field(
        default=512,
        metadata={"help": "Max tokens of prompt + completion; longer completions keep their start.", "min": 1},
    )
    max_prompt_length: int | None = field(
        default=256,
        metadata={"help": "Max prompt tokens when a pair is too long; longer prompts keep their end.", "min": 1},
    )
    pack_tokens: int = field(
        default=512,
        metadata={"help": "Token budget of one packed row (pairs are never split; a longer pair gets its own row). "
                  "Attention is computed over whole rows, so longer rows cost quadratically more.", "min": 1},
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains all weights.", "min": 0})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scaling = alpha / r).", "min": 1})
    lora_dropout: float = field(
        default=0.05, metadata={"help": "Dropout on the LoRA branch.", "min": 0, "max": 1, "max_exclusive": True}
    )
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
    seed: int = field(
        default=42,
        metadata={"help": "Seed of data order, initialisation and dropout.", "min": 0, "max": SEED_MAX},
    )
    eval_every: int | None = field(
        default=None,
        metadata={"help": "Score --eval-data every N optimiser steps as well as before and after (0: only before "
                  f"and after); auto: every max({EVAL_EVERY_MIN}, steps/{EVAL_EVERY_DIVISOR}) steps when the run has "
                  f"at least {EVAL_EVERY_MIN_STEPS} steps, else only before and after.", "min": 0, "auto": True},
    )
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N optimiser steps (0: never).", "min": 0})
    save_every_minutes: float = field(
        default=5.0,
        metadata={"help": "Checkpoint after the first step that ends this many minutes after the last checkpoint "
                  "(or the start); 0: never. A SmolLM2 checkpoint with its optimiser state is ~1.6 GB and takes "
                  "seconds to write, so every 5 minutes costs little and a crash loses at most 5 minutes.",
                  "min": 0},
    )
    keep_checkpoints: int = field(
        default=2, metadata={"help": "How many recent checkpoints to keep (0: all of them).", "min": 0}
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue from the newest checkpoint in OUT/checkpoints."}
    )
    device: str | None = field(default=None, metadata={"help": "Device override (cpu, cuda, cuda:1); default: auto."})
    dtype: DtypeName | None = field(
        default=None,
        metadata={"help": "Compute dtype (autocast; weights stay float32); default bfloat16 on CUDA, float32 on CPU."},
    )
    log_every: int = field(default=1, metadata={"help": "Write a log line every N optimiser steps.", "min": 1})

    def validate(self) -> None:
        """Raise :class:`ConfigError` (a ``ValueError``) naming the first option out of its declared type and
        bounds, then the first that contradicts another."""
        check_config(self)
        if not self.loss:
            raise ConfigError("--loss needs at least one loss name", field="loss")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss):
            raise ConfigError(f"--loss-weights has {len(self.loss_weights)} values for {len(self.loss)} losses",
                              field="loss_weights")
        if self.fsdp and self.lora_r > 0:
            raise ConfigError("--fsdp shards full fine-tuning; LoRA runs use DDP (drop --fsdp)", field="fsdp")
        if self.reference == "adapter-disabled" and self.lora_r == 0:
            raise ConfigError("--reference adapter-disabled needs LoRA (--lora-r > 0)", field="reference")
        limits = (self.max_prompt_length, self.max_length)
        if limits[0] is not None and limits[1] is not None and limits[0] >= limits[1]:
            raise ConfigError(
                f"--max-prompt-length ({self.max_prompt_length}) must be below --max-length ({self.max_length})",
                field="max_prompt_length",
            )

    @property
    def reference_mode(self) -> str:
        """The resolved reference mode (``auto`` picks adapter-disabled with LoRA, precomputed otherwise)."""
        if self.reference == "auto":
            return "adapter-disabled" if self.lora_r > 0 else "precomputed"
        return self.reference
