"""Summed completion log-probs of a causal LM, without ever building ``[rows, length, vocab]`` logits.

The backbone runs once over a :class:`~dpo_engine.packing.PackedBatch`; only the hidden states that
predict a completion token go through the LM head, in chunks, inside one autograd function that
recomputes each chunk's logits in the backward pass. Peak extra memory is ``chunk x vocab`` floats
instead of ``2 x batch x length x vocab``.

Models whose head is not a plain bias-free linear layer, or that rescale their logits
(softcapping, logit scales), take a generic path through the model's own forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dpo_engine.packing import PackedBatch

# Rows of the LM head computed at once: [256, vocab] float32 is 48 MiB for a 49k vocabulary, small beside the
# activations it coexists with at the start of the backward pass, and big enough for efficient matmuls.
CHUNK_ROWS = 256

_LOGIT_RESCALING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier",
                    "lm_head_multiplier")


class _LinearLogProb(torch.autograd.Function):
    """``log_softmax(hidden @ weight.T)[i, target[i]]`` for each row, chunked over rows, in float32."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
        # Under autocast the hidden states are half precision; the head then runs in that precision too,
        # and its weight gradient goes back to the (float32 master) weight's dtype.
        ctx.weight_dtype = weight.dtype
        weight = weight.to(hidden.dtype)
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            logits = (hidden[rows] @ weight.T).float()
            lse[rows] = torch.logsumexp(logits, dim=-1)
            out[rows] = logits.gather(1, targets[rows, None]).squeeze(1) - lse[rows]
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        hidden, weight, targets, lse = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        for start in range(0, hidden.shape[0], ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            h = hidden[rows]
            # In place: this chunk's [rows, vocab] buffer is allocated once, when every activation is still alive.
            probs = (h @ weight.T).float().sub_(lse[rows, None]).exp_()
            # d log p[target] / d logits = onehot(target) - softmax
            grad_logits = probs.mul_(-grad_out[rows, None])
            grad_logits.scatter_add_(1, targets[rows, None], grad_out[rows, None].float())
            grad_logits = grad_logits.to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[rows] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight += (grad_logits.T @ h).float()
        return grad_hidden, None if grad_weight is None else grad_weight.to(ctx.weight_dtype), None, None


def _causal_lm(model: nn.Module) -> Any:
    """The transformers model under DDP / FSDP / PEFT wrappers (typed ``Any``: its API is transformers')."""
    inner: Any = model
    while hasattr(inner, "module") and not hasattr(inner, "get_output_embeddings"):
        inner = inner.module
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner


def supports_fused_head(model: nn.Module) -> bool:
    """Whether the fast path (backbone + chunked linear head) gives this model's exact log-probs."""
    lm = _causal_lm(model)
    head = lm.get_output_embeddings()
    text_config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    rescaled = any(getattr(text_config, name, None) not in (None, 1.0) for name in _LOGIT_RESCALING)
    return type(head) is nn.Linear and head.bias is None and not rescaled and hasattr(lm, lm.base_model_prefix)


def token_logps(model: nn.Module, batch: PackedBatch, *, chunk: int = CHUNK_ROWS, fused: bool | None = None) -> Tensor:
    """Log-prob of every scored completion token [N] (float32), following ``batch.source_index``."""
    lm = _causal_lm(model)
    device_type = batch.input_ids.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = next(lm.parameters()).dtype
    mask = batch.attention_mask(dtype)
    if fused is None:
        fused = supports_fused_head(model)
    if fused:
        backbone = getattr(lm, lm.base_model_prefix)
        hidden = backbone(
            input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask, use_cache=False
        ).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.source_index)
        weight = lm.get_output_embeddings().weight
        return _LinearLogProb.apply(hidden, weight, batch.target_ids, chunk)
    logits = model(
        input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=mask, use_cache=False
    ).logits
    picked = logits.reshape(-1, logits.shape[-1]).index_select(0, batch.source_index).float()
    return picked.log_softmax(-1).gather(1, batch.target_ids[:, None]).squeeze(1)


def sequence_logps(
    model: nn.Module, batch: PackedBatch, *, chunk: int = CHUNK_ROWS, fused: bool | None = None
) -> Tensor:
    """Summed completion log-probs per segment [2B] (chosen first, then rejected), float32."""
    per_token = token_logps(model, batch, chunk=chunk, fused=fused)
    sums = torch.zeros(batch.num_segments, dtype=torch.float32, device=per_token.device)
    return sums.index_add(0, batch.segment_ids, per_token)


class SequenceLogps(nn.Module):
    """``forward(batch) -> [2B]`` summed completion log-probs; the module that DDP / FSDP wrap.

    Wrapping this module (not the bare model) makes the data-parallel wrapper see the whole
    computation, backbone and head, in one ``forward``.
    """

    def __init__(self, model: nn.Module, *, chunk: int = CHUNK_ROWS, fused: bool | None = None) -> None:
        super().__init__()
        self.model = model
        self.chunk = chunk
        self.fused = supports_fused_head(model) if fused is None else fused

    def forward(self, batch: PackedBatch) -> Tensor:
        return sequence_logps(self.model, batch, chunk=self.chunk, fused=self.fused)
