"""Prompt files for generation: JSONL / JSON / Parquet records with a ``prompt`` field, or plain text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Prompt = str | list[dict[str, str]]  # a user message, or a conversation of {role, content} messages


def is_message(message: Any) -> bool:
    return (
        isinstance(message, dict) and isinstance(message.get("role"), str) and isinstance(message.get("content"), str)
    )


@dataclass
class PromptRecord:
    id: Any  # the record's "id" (or "prompt_id") field; None when it has none
    prompt: Prompt


def read_prompts(path: str | Path) -> list[PromptRecord]:
    """Prompts from ``.jsonl`` / ``.json`` / ``.parquet`` records with a ``prompt`` field (a string or a message
    list, optional ``id``) or from a ``.txt`` file, one prompt per non-blank line. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such prompts file")
    if path.suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        records = [PromptRecord(id=None, prompt=line) for line in lines if line.strip()]
    else:
        records = [_prompt_record(raw, f"{path}: {where}") for where, raw in _raw_records(path)]
    if not records:
        raise ValueError(f"{path}: no prompts")
    return records


def _raw_records(path: Path) -> list[tuple[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # optional: only this format needs it
        except ImportError:
            raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        return [(f"row {n}", row) for n, row in enumerate(pq.read_table(path).to_pylist(), start=1)]
    if path.suffix not in (".jsonl", ".json"):
        raise ValueError(f"{path}: unsupported prompts format (expected .jsonl, .json, .parquet or .txt)")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            return [(f"item {n}", item) for n, item in enumerate(json.loads(text), start=1)]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON ({exc})") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
    return records


def _prompt_record(raw: Any, where: str) -> PromptRecord:
    if not isinstance(raw, dict) or "prompt" not in raw:
        raise ValueError(f"{where}: expected an object with a 'prompt' field")
    prompt = raw["prompt"]
    if isinstance(prompt, str) and prompt.strip():
        return PromptRecord(id=raw.get("id", raw.get("prompt_id")), prompt=prompt)
    if isinstance(prompt, list) and prompt and all(is_message(m) for m in prompt):
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
        return PromptRecord(id=raw.get("id", raw.get("prompt_id")), prompt=messages)
    raise ValueError(f"{where}: 'prompt' must be a non-empty string or a list of {{role, content}} messages")
