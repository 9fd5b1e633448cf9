"""Batched sampling with the KV cache: the completions annotators compare.

Prompts go through the chat template (a plain string is one user message), are sorted by length and decoded in
left-padded batches. Each prompt is prefilled once and its cache copied for its ``n`` samples; rows leave the
batch as soon as they end their turn, so short answers stop costing compute. Every (prompt, sample) row draws its
randomness from its own generator seeded by ``(seed, prompt index, sample index)``: the same seed gives the same
completions whatever the batch size or the other prompts.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from dpo_engine.config import GenerateConfig, check_values
from dpo_engine.prompts import Prompt, PromptRecord, is_message

# Tokens whose nucleus is found without a full sort: a full sort of a large vocabulary costs ~20x more on a CPU,
# and the nucleus of a trained model's next-token distribution is nearly always narrower.
NUCLEUS_TOP_K = 256
# Bits of a seed drawn when none is given: any non-negative int64, which torch generators accept.
_RANDOM_SEED_BITS = 63
# Bytes of a row's derived seed: 64 bits, shifted right once to stay a non-negative int64.
_ROW_SEED_BYTES = 8
# Floor of the uniform draws: log(-log(u)) is infinite at u = 0, which a generator can return.
_UNIFORM_FLOOR = 1e-20


@dataclass
class Generation:
    text: str  # the completion, without the end-of-turn token
    prompt_tokens: int  # tokens of the templated prompt
    completion_tokens: int  # tokens generated, the end-of-turn token included when there is one
    finish_reason: str  # "stop" (ended its turn) | "length" (hit max_new_tokens)


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    *,
    n: int = GenerateConfig.n,
    temperature: float = GenerateConfig.temperature,
    top_p: float = GenerateConfig.top_p,
    max_new_tokens: int = GenerateConfig.max_new_tokens,
    seed: int | None = GenerateConfig.seed,
    batch_size: int = GenerateConfig.batch_size,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Generation]]:
    """``n`` completions for each prompt, in input order; defaults and bounds are :class:`GenerateConfig`'s.
    ``temperature=0`` decodes greedily; ``seed=None`` draws a fresh seed; ``batch_size`` counts sequences decoded
    together; ``progress(done, total)`` is called after each batch (in sequences)."""
    settings = {"n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed,
                "batch_size": batch_size}
    check_values(GenerateConfig, settings, by_name=True)
    encoded = [prompt_ids(tokenizer, prompt, index) for index, prompt in enumerate(prompts)]
    context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    for index, ids in enumerate(encoded):
        if context is not None and len(ids) + max_new_tokens > context:
            raise ValueError(
                f"prompt {index} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} it exceeds the "
                f"model's context of {context} tokens"
            )
    stops = stop_token_ids(tokenizer, model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(stops), 0)
    base_seed = seed if seed is not None else secrets.randbits(_RANDOM_SEED_BITS)
    # Longest first: a batch that does not fit in memory fails at once, not after hours.
    rows = sorted(((i, j) for i in range(len(encoded)) for j in range(n)), key=lambda r: (-len(encoded[r[0]]), r))
    results: list[list[Generation | None]] = [[None] * n for _ in encoded]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                sampler = _Sampler(temperature, top_p, [_row_seed(base_seed, i, j) for i, j in chunk], model.device)
                outputs = _decode_batch(model, [i for i, _ in chunk], encoded, sampler, stops, pad_id, max_new_tokens)
                for (i, j), (tokens, stopped) in zip(chunk, outputs, strict=True):
                    text = tokenizer.decode(tokens[:-1] if stopped else tokens, skip_special_tokens=True)
                    results[i][j] = Generation(
                        text=str(text),
                        prompt_tokens=len(encoded[i]),
                        completion_tokens=len(tokens),
                        finish_reason="stop" if stopped else "length",
                    )
                if progress is not None:
                    progress(start + len(chunk), len(rows))
    finally:
        model.train(was_training)
    return [[g for g in per_prompt if g is not None] for per_prompt in results]


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, index: int = 0) -> list[int]:
    """Token ids of ``prompt`` rendered by the chat template with the generation prompt (a string is one user
    message); without a chat template, a plain string is tokenised as is."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and prompt and all(is_message(m) for m in prompt):
        messages = prompt
    else:
        raise ValueError(f"prompt {index}: expected a string or a non-empty list of {{role, content}} messages")
    if tokenizer.chat_template is None:
        if isinstance(prompt, str):
            return list(tokenizer(prompt)["input_ids"])
        raise ValueError(f"prompt {index}: the tokenizer has no chat template to render a message list")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None = None) -> set[int]:
    """Ids that end a completion: the tokenizer's eos, the model's generation-config eos ids, and the token the chat
    template closes an assistant turn with (``<|im_end|>``, ``<|eot_id|>``...), which need not be eos."""
    stops: set[int] = set()
    if tokenizer.eos_token_id is not None:
        stops.add(int(tokenizer.eos_token_id))
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        stops.update(int(t) for t in ([config_eos] if isinstance(config_eos, int) else config_eos))
    end_of_turn = _template_end_of_turn(tokenizer)
    if end_of_turn is not None:
        stops.add(end_of_turn)
    return stops


def _template_end_of_turn(tokenizer: PreTrainedTokenizerBase) -> int | None:
    if tokenizer.chat_template is None:
        return None
    marker = "Duet-end-of-turn-probe"
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # templates may refuse this probe conversation (required system turn, tools...)
        return None
    assert isinstance(text, str)
    after = text[text.rfind(marker) + len(marker) :].lstrip() if marker in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    return int(ids[0]) if ids and ids[0] in special else None


def _row_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{prompt_index}:{sample_index}".encode(), digest_size=_ROW_SEED_BYTES).digest()
    return int.from_bytes(digest, "little") >> 1


class _Sampler:
    """Picks the next token of each row: argmax when greedy, else temperature + top-p sampling drawn from the row's
    own generator (Gumbel-max over the kept tokens, i.e. a multinomial draw from the renormalised distribution)."""

    def __init__(self, temperature: float, top_p: float, seeds: list[int], device: torch.device) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:  # logits [A, V], rows: A row ids
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits.float() / self.temperature
        if self.top_p < 1:
            logits = logits.masked_fill(logits < _nucleus_threshold(logits, self.top_p), float("-inf"))
        uniform = torch.stack(
            [torch.rand(logits.shape[-1], generator=self.generators[r], device=logits.device) for r in rows]
        )
        gumbel = -torch.log(-torch.log(uniform.clamp_min(_UNIFORM_FLOOR)))
        return (logits + gumbel).argmax(dim=-1)


def _nucleus_threshold(logits: torch.Tensor, top_p: float, k: int = NUCLEUS_TOP_K) -> torch.Tensor:
    """[A, 1] smallest logit each row keeps: the nucleus is the shortest run of most likely tokens whose mass
    reaches ``top_p``. Looks at the top ``k`` first and sorts only the rows whose nucleus is wider; each row's
    result is independent of the others."""

    def threshold(values: torch.Tensor, log_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = (values - log_norm).exp()  # values sorted descending
        cumulative = probs.cumsum(dim=-1)
        kept = (cumulative - probs <= top_p).sum(dim=-1, keepdim=True)  # the top token always stays
        return values.gather(-1, kept - 1), cumulative[:, -1] > top_p

    log_norm = logits.logsumexp(dim=-1, keepdim=True)
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).values
    result, inside = threshold(top, log_norm)
    wide = (~inside).nonzero().flatten()
    if len(wide):
        wide_sorted = logits[wide].sort(dim=-1, descending=True).values
        result[wide] = threshold(wide_sorted, log_norm[wide])[0]
    return result


def _cache_kwarg(model: PreTrainedModel) -> str:
    # transformers 5.24 renamed `past_key_values` to `cache` (the old name warns); earlier 5.x only know the old one.
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def _decode_batch(
    model: PreTrainedModel,
    row_prompts: list[int],
    encoded: list[list[int]],
    sampler: _Sampler,
    stops: set[int],
    pad_id: int,
    max_new_tokens: int,
) -> list[tuple[list[int], bool]]:
    """Generated tokens and whether each row stopped on an end-of-turn token, for rows whose prompts are
    ``encoded[row_prompts[r]]``; rows of the same prompt share one prefill."""
    device = model.device
    cache = DynamicCache(config=model.config)
    cache_kwarg = _cache_kwarg(model)
    logits, attention_mask, next_position = _prefill(model, row_prompts, encoded, pad_id, cache, cache_kwarg)
    alive = list(range(len(row_prompts)))
    tokens: list[list[int]] = [[] for _ in row_prompts]
    stopped = [False] * len(row_prompts)
    for step in range(max_new_tokens):
        picked = sampler(logits, alive)
        for row, token in zip(alive, picked.tolist(), strict=True):
            tokens[row].append(token)
            stopped[row] = token in stops
        keep = [k for k, row in enumerate(alive) if not stopped[row]]
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(alive):  # drop finished rows so they stop costing compute
            keep_t = torch.tensor(keep, device=device)
            cache.batch_select_indices(keep_t)
            attention_mask, next_position, picked = attention_mask[keep_t], next_position[keep_t], picked[keep_t]
            alive = [alive[k] for k in keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(alive), 1))], dim=-1)
        out = model(
            input_ids=picked[:, None],
            attention_mask=attention_mask,
            position_ids=next_position,
            use_cache=True,
            **{cache_kwarg: cache},
        )
        logits = out.logits[:, -1]
        next_position = next_position + 1
    return [(tokens[row], stopped[row]) for row in range(len(row_prompts))]


def _prefill(
    model: PreTrainedModel,
    row_prompts: list[int],
    encoded: list[list[int]],
    pad_id: int,
    cache: DynamicCache,
    cache_kwarg: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run each distinct prompt once, left-padded, into ``cache``, then copy its cache rows for every row that
    samples it. Returns the rows' next-token logits [A, V], their attention mask [A, L] and
    the position of their next token [A, 1]."""
    device = model.device
    unique = list(dict.fromkeys(row_prompts))
    width = max(len(encoded[p]) for p in unique)
    input_ids = torch.full((len(unique), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(unique), width), dtype=torch.long)
    for k, p in enumerate(unique):  # left padding: every prompt ends at the last column
        input_ids[k, width - len(encoded[p]) :] = torch.tensor(encoded[p])
        attention_mask[k, width - len(encoded[p]) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp_min(0)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=1,
        **{cache_kwarg: cache},
    )
    expand = torch.tensor([unique.index(p) for p in row_prompts], device=device)
    if len(unique) < len(row_prompts):
        cache.batch_select_indices(expand)
    return out.logits[:, -1][expand], attention_mask[expand], position_ids[expand][:, -1:] + 1


def write_generations(
    out: Path, records: Sequence[PromptRecord], results: Sequence[Sequence[Generation]], meta: dict[str, Any]
) -> None:
    """Write one JSON line per completion to ``out`` atomically (a temporary file renamed into place): where it
    came from (prompt index, id, sample index, prompt), the :class:`Generation`, and ``meta`` (model, settings)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for index, (record, generations) in enumerate(zip(records, results, strict=True)):
                prompt_id = record.id if record.id is not None else index
                for sample, g in enumerate(generations):
                    line = {"prompt_index": index, "prompt_id": prompt_id, "sample_index": sample}
                    line |= {"prompt": record.prompt, **asdict(g), **meta}
                    fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
