"""Preference pairs: reading them from disk and tokenising them exactly as TRL's ``DPOTrainer`` does.

Input is TRL's preference format, one record per pair with ``prompt``, ``chosen`` and ``rejected``:
either plain strings (*standard*) or lists of ``{"role", "content"}`` messages (*conversational*).
Extra columns are ignored.

Tokenisation mirrors ``trl.DPOTrainer._prepare_dataset`` (TRL 1.16), so a model trained here and one
trained there see the same token ids:

* standard: the EOS text is appended to each completion unless it already ends with it; the prompt
  and ``prompt + completion`` are tokenised with the tokenizer's default special tokens;
* conversational: the prompt goes through the chat template with the generation prompt, and
  ``prompt + completion`` through the chat template without it;
* the completion is what follows the longest common prefix of the tokenised prompt and both
  tokenised ``prompt + completion`` sequences (templates and BPE merges may disagree at the seam).

Truncation (``max_length`` / ``max_prompt_length``) keeps the end of the prompt and the start of each
completion, and each cut record is counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

FIELDS = ("prompt", "chosen", "rejected")


class DataError(ValueError):
    """A preference file that cannot be read; the message names the file and the record."""


@dataclass(frozen=True)
class TokenizedPair:
    """Token ids of one preference pair; the loss covers ``chosen_ids`` / ``rejected_ids`` only."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Read preference records from a ``.jsonl`` / ``.json`` file, a ``.parquet`` file or a ``save_to_disk`` folder."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        records = _load_saved_dataset(path)
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq  # only needed for this format

        records = pq.read_table(path).to_pylist()
    elif path.suffix in (".jsonl", ".json"):
        records = _load_jsonl(path)
    else:
        raise DataError(f"{path}: unsupported format (expected .jsonl, .parquet or a datasets.save_to_disk folder)")
    if not records:
        raise DataError(f"{path}: no records")
    for index, record in enumerate(records):
        _check_record(record, f"{path}: record {index + 1}")
    return records


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            return list(json.loads(text))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON ({exc})") from exc
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number}: expected a JSON object")
        records.append(record)
    return records


def _load_saved_dataset(path: Path) -> list[dict[str, Any]]:
    import datasets  # only needed for this format

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: not a datasets.save_to_disk folder") from exc
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise DataError(f"{path}: a DatasetDict without a 'train' split (splits: {', '.join(loaded)})")
        loaded = loaded["train"]
    return list(loaded.to_list())


def _check_record(record: dict[str, Any], where: str) -> None:
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)} (need prompt, chosen, rejected)")
    for name in FIELDS:
        value = record[name]
        if isinstance(value, str):
            continue
        if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
            continue
        raise DataError(f"{where}: field {name!r} must be a string or a list of {{role, content}} messages")
    kinds = {isinstance(record[name], str) for name in FIELDS}
    if len(kinds) > 1:
        raise DataError(f"{where}: mixes plain strings and message lists across prompt/chosen/rejected")


def is_conversational(record: dict[str, Any]) -> bool:
    """True when the record holds message lists rather than plain strings."""
    return isinstance(record["prompt"], list)


def _ids(encoded: Any) -> list[int]:
    ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
    return list(ids)


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_record(record: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> TokenizedPair:
    """Token ids of one record, identical to TRL 1.16 ``DPOTrainer``'s prompt/chosen/rejected ids."""
    if is_conversational(record):
        prompt = _ids(tokenizer.apply_chat_template(
            record["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True, tools=None
        ))
        full_chosen = _ids(tokenizer.apply_chat_template(
            record["prompt"] + record["chosen"], tokenize=True, return_dict=True, tools=None
        ))
        full_rejected = _ids(tokenizer.apply_chat_template(
            record["prompt"] + record["rejected"], tokenize=True, return_dict=True, tools=None
        ))
    else:
        eos = tokenizer.eos_token or ""
        chosen = record["chosen"] if record["chosen"].endswith(eos) else record["chosen"] + eos
        rejected = record["rejected"] if record["rejected"].endswith(eos) else record["rejected"] + eos
        prompt = _ids(tokenizer(text=record["prompt"]))
        full_chosen = _ids(tokenizer(text=record["prompt"] + chosen))
        full_rejected = _ids(tokenizer(text=record["prompt"] + rejected))
    prompt_len = min(_common_prefix_length(prompt, full_chosen), _common_prefix_length(prompt, full_rejected))
    return TokenizedPair(prompt[:prompt_len], full_chosen[prompt_len:], full_rejected[prompt_len:])


def truncate_pair(
    pair: TokenizedPair, max_length: int | None, max_prompt_length: int | None
) -> tuple[TokenizedPair, bool]:
    """Fit ``prompt + longest completion`` into ``max_length`` tokens; return the pair and whether it was cut.

    The prompt is cut first, keeping its end (the part next to the answer), to ``max_prompt_length``
    (or half of ``max_length`` when unset); then the completions are cut, keeping their start. A
    prompt longer than ``max_prompt_length`` is always cut, even when the pair would fit.
    """
    prompt, chosen, rejected = pair.prompt_ids, pair.chosen_ids, pair.rejected_ids
    cut = False
    if max_prompt_length is not None and len(prompt) > max_prompt_length:
        prompt, cut = prompt[len(prompt) - max_prompt_length:], True
    if max_length is not None and len(prompt) + max(len(chosen), len(rejected)) > max_length:
        prompt_budget = max_prompt_length if max_prompt_length is not None else max_length // 2
        if len(prompt) > prompt_budget:
            prompt = prompt[len(prompt) - prompt_budget:]
        budget = max_length - len(prompt)
        chosen, rejected, cut = chosen[:budget], rejected[:budget], True
    return TokenizedPair(prompt, chosen, rejected), cut


def tokenize_records(
    records: Sequence[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
    where: str = "data",
) -> tuple[list[TokenizedPair], int]:
    """Tokenise and truncate every record; return the pairs and how many records were cut."""
    pairs: list[TokenizedPair] = []
    truncated = 0
    for index, record in enumerate(records):
        pair = tokenize_record(record, tokenizer)
        if not pair.chosen_ids or not pair.rejected_ids:
            raise DataError(f"{where}: record {index + 1}: an empty completion after tokenisation")
        pair, cut = truncate_pair(pair, max_length, max_prompt_length)
        truncated += cut
        pairs.append(pair)
    return pairs, truncated


def load_pairs(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int | None = None,
    max_prompt_length: int | None = None,
) -> tuple[list[TokenizedPair], int]:
    """Read and tokenise a preference file; return the pairs and the number of truncated records."""
    records = load_records(path)
    return tokenize_records(
        records, tokenizer, max_length=max_length, max_prompt_length=max_prompt_length, where=str(path)
    )
