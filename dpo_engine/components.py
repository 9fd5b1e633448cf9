"""The pieces a run assembles before its first step: LoRA, the reference, and the final export."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from dpo_engine.config import TrainConfig
from dpo_engine.data import TokenizedPair
from dpo_engine.distributed import DistContext
from dpo_engine.logprobs import SequenceLogps
from dpo_engine.metrics import batches
from dpo_engine.packing import PackedBatch, pack_pairs

ReferenceFn = Callable[[PackedBatch, list[int]], Tensor]


def disable_dropout(model: nn.Module) -> None:
    """DPO compares log-probs of the same text under two models; dropout would only add noise (as in TRL)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def apply_lora(model: PreTrainedModel, config: TrainConfig) -> nn.Module:
    """Wrap ``model`` with fresh LoRA adapters; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    targets = config.lora_target_modules
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    """Half-precision compute over float32 master weights, or nothing in float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class Reference:
    """Reference log-probs by one of three means: a frozen copy, the policy with its LoRA adapter
    disabled (no second copy), or a table computed once before the first step."""

    def __init__(self, mode: str, *, device: torch.device, dtype: torch.dtype) -> None:
        self.mode = mode
        self.device = device
        self.dtype = dtype
        self.module: SequenceLogps | None = None
        self.adapter_model: nn.Module | None = None
        self.tables: dict[str, Tensor] = {}

    @classmethod
    def frozen(cls, model: PreTrainedModel, *, device: torch.device, dtype: torch.dtype) -> Reference:
        ref = cls("frozen", device=device, dtype=dtype)
        frozen: Any = copy.deepcopy(model)
        frozen = frozen.to(dtype=dtype).eval()
        frozen.requires_grad_(False)
        ref.module = SequenceLogps(frozen)
        return ref

    @classmethod
    def adapter_disabled(cls, peft_model: nn.Module, *, device: torch.device, dtype: torch.dtype) -> Reference:
        ref = cls("adapter-disabled", device=device, dtype=dtype)
        ref.adapter_model = peft_model
        ref.module = SequenceLogps(peft_model)
        return ref

    @classmethod
    def precomputed(
        cls,
        model: PreTrainedModel,
        splits: Mapping[str, Sequence[TokenizedPair]],
        *,
        batch_size: int,
        pad_token_id: int,
        pack_tokens: int,
        ctx: DistContext,
        dtype: torch.dtype,
    ) -> Reference:
        """Score every pair of every split once with ``model`` (processes share the work)."""
        ref = cls("precomputed", device=ctx.device, dtype=dtype)
        module = SequenceLogps(model)
        for split, pairs in splits.items():
            table = torch.zeros(len(pairs), 2, dtype=torch.float32, device=ctx.device)
            share = list(range(ctx.rank, len(pairs), ctx.world_size))
            for indices in batches(pairs, share, batch_size):
                batch = pack_pairs([pairs[i] for i in indices], pad_token_id=pad_token_id, pack_tokens=pack_tokens)
                with torch.no_grad(), autocast(ctx.device, dtype):
                    logps = module(batch.to(ctx.device)).float()
                table[indices] = logps.view(2, -1).T
            ref.tables[split] = ctx.all_reduce_sum(table)
        return ref

    def for_split(self, split: str) -> ReferenceFn:
        """``fn(batch, pair_indices) -> [2B]`` reference log-probs, chosen first."""

        def logps(batch: PackedBatch, indices: list[int]) -> Tensor:
            if self.mode == "precomputed":
                rows = self.tables[split][torch.tensor(indices, device=self.device)]
                return torch.cat([rows[:, 0], rows[:, 1]])
            assert self.module is not None
            adapter_off: AbstractContextManager[object] = nullcontext()
            if self.adapter_model is not None:
                adapter_off = self.adapter_model.disable_adapter()  # type: ignore[operator]
            with torch.no_grad(), adapter_off, autocast(self.device, self.dtype):
                return self.module(batch).float()

        return logps


def save_final(
    model: nn.Module, wrapped: nn.Module, tokenizer: PreTrainedTokenizerBase, path: Path, ctx: DistContext
) -> None:
    """Save a plain ``from_pretrained`` folder (LoRA merged) plus tokenizer; main process writes."""
    state_dict = None
    if wrapped is not model and type(wrapped).__name__ == "FullyShardedDataParallel":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        state_dict = {k.removeprefix("model."): v for k, v in full.items()}
    if ctx.is_main:
        unwrapped: Any = model
        export = unwrapped.merge_and_unload() if hasattr(unwrapped, "merge_and_unload") else unwrapped
        path.mkdir(parents=True, exist_ok=True)
        export.save_pretrained(path, state_dict=state_dict)
        tokenizer.save_pretrained(path)
    ctx.barrier()
