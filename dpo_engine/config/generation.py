"""The one typed configuration of sampling: ``python -m dpo_engine generate``, the defaults of
:func:`dpo_engine.generate.generate`, and the web app's generation settings all come from :class:`GenerateConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dpo_engine.config.fields import check_config
from dpo_engine.config.training import DEFAULT_MODEL, SEED_MAX

GenerateDtype = Literal["auto", "float32", "bfloat16", "float16"]

# Most completions per prompt: more would fill the annotators' queue with one prompt's answers.
N_MAX = 16
# Hottest temperature: far above 1 the distribution is near uniform and completions are noise to judge.
TEMPERATURE_MAX = 5.0
# Longest completion: more than an annotator reads side by side, and beyond many small models' context.
MAX_NEW_TOKENS_MAX = 8192


@dataclass
class GenerateConfig:
    """How completions are sampled, and, for the command line, from which model, prompts and into which file."""

    prompts: str = field(
        metadata={"help": "JSONL/JSON/Parquet with a 'prompt' field (string or message list, optional 'id'), "
                  "or .txt (one prompt per line)."}
    )
    out: str = field(metadata={"help": "Output JSONL, one line per completion (written atomically)."})
    model: str = field(
        default=DEFAULT_MODEL, metadata={"help": "Built-in model name, local folder or Hugging Face id."}
    )
    n: int = field(default=1, metadata={"help": "Completions per prompt.", "min": 1, "max": N_MAX})
    temperature: float = field(
        default=0.7,
        metadata={"help": "Sampling temperature; 0 decodes greedily.", "min": 0, "max": TEMPERATURE_MAX},
    )
    top_p: float = field(
        default=0.95,
        metadata={"help": "Nucleus sampling: draw from the most likely tokens whose probability adds up to this.",
                  "min": 0, "min_exclusive": True, "max": 1},
    )
    max_new_tokens: int = field(
        default=256, metadata={"help": "Tokens per completion at most.", "min": 1, "max": MAX_NEW_TOKENS_MAX}
    )
    seed: int | None = field(
        default=0,
        metadata={"help": "Seed of the sampling: the same seed gives the same completions whatever the batch size; "
                  "none draws a fresh one.", "min": 0, "max": SEED_MAX},
    )
    batch_size: int = field(default=16, metadata={"help": "Sequences decoded together.", "min": 1})
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:N or mps; default: cuda when available."}
    )
    dtype: GenerateDtype = field(
        default="auto", metadata={"help": "Weights dtype; auto: bfloat16 on CUDA, float32 otherwise."}
    )

    def validate(self) -> None:
        """Raise :class:`~dpo_engine.config.ConfigError` (a ``ValueError``) naming the first option out of its
        declared type and bounds."""
        check_config(self)
