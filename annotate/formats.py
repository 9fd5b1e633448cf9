"""Reading and validating import files: JSONL, CSV and Parquet records in TRL's formats.

Everything here is pure (no database): it turns a file into validated records, or raises an
``ImportFileError`` that names the file, the line (or row) and the field.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings

ROLES = ("system", "user", "assistant")
FORMATS = ("jsonl", "csv", "parquet")
MAX_ERRORS_SHOWN = 20

Message = dict[str, str]


class ImportFileError(ValueError):
    """A file that cannot be imported; ``errors`` lists every bad record found (up to a limit)."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__("\n".join(shown) + more)


class RecordError(ValueError):
    def __init__(self, field_name: str, message: str):
        self.field_name = field_name
        super().__init__(message)


@dataclass(frozen=True)
class PromptRecord:
    messages: list[Message]
    external_id: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PairRecord:
    prompt: PromptRecord
    chosen: list[Message]
    rejected: list[Message]
    chosen_model: str = ""
    rejected_model: str = ""


def content_hash(*parts: Any) -> str:
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def detect_format(name: str, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise ImportFileError([f"{name}: unknown format {explicit!r}; use one of {', '.join(FORMATS)}"])
        return explicit
    suffix = Path(name).suffix.lower().lstrip(".")
    fmt = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv", "parquet": "parquet", "pq": "parquet"}
    if suffix not in fmt:
        raise ImportFileError([f"{name}: cannot tell the format from the extension; use .jsonl, .csv or .parquet"])
    return fmt[suffix]


def iter_raw_records(stream: IO[bytes], *, name: str, fmt: str) -> Iterator[tuple[str, Any]]:
    """Yield ``(location, raw_record)`` pairs; location reads like ``pairs.jsonl line 3``."""
    if fmt == "jsonl":
        for number, raw_line in enumerate(io.TextIOWrapper(stream, encoding="utf-8", errors="strict"), start=1):
            line = raw_line.strip()
            if not line:
                continue
            where = f"{name} line {number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                yield where, RecordError("", f"invalid JSON: {exc.msg} at column {exc.colno}")
    elif fmt == "csv":
        reader = csv.DictReader(io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline=""))
        # Row 1 is the header, so the first record sits on row 2 as a spreadsheet shows it.
        for number, row in enumerate(reader, start=2):
            yield f"{name} row {number}", {k: _csv_cell(v) for k, v in row.items() if k is not None}
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(stream)
        except Exception as exc:
            raise ImportFileError([f"{name}: not a readable Parquet file ({exc})"]) from exc
        number = 0
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield f"{name} row {number}", row


def _csv_cell(value: str | None) -> Any:
    """CSV cells holding JSON message lists are decoded; anything else stays text."""
    if value is None:
        return None
    stripped = value.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return value
    return value


def _text(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise RecordError(field_name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RecordError(field_name, "must not be empty")
    limit = settings.DUET_MAX_TEXT_CHARS
    if len(value) > limit:
        raise RecordError(field_name, f"is {len(value)} characters long; the limit is {limit}")
    return value


def messages_from(value: Any, field_name: str, *, default_role: str) -> list[Message]:
    """A string becomes one message with ``default_role``; a list must be ``{"role", "content"}`` dicts."""
    if isinstance(value, str):
        return [{"role": default_role, "content": _text(value, field_name)}]
    if not isinstance(value, list) or not value:
        raise RecordError(field_name, "must be a string or a non-empty list of {role, content} messages")
    messages = []
    for i, item in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(item, dict):
            raise RecordError(where, "must be an object with 'role' and 'content'")
        role = item.get("role")
        if role not in ROLES:
            raise RecordError(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        messages.append({"role": role, "content": _text(item.get("content"), f"{where}.content")})
    return messages


def _external_id(record: dict[str, Any]) -> str:
    value = record.get("id")
    if value is None or value == "":
        return ""
    if not isinstance(value, str | int):
        raise RecordError("id", "must be a string or an integer")
    text = str(value)
    if len(text) > 200:
        raise RecordError("id", "is longer than 200 characters")
    return text


def _tags(record: dict[str, Any]) -> list[str]:
    value = record.get("tags")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise RecordError("tags", "must be a list of strings or a comma-separated string")
    tags = [t for t in value if t]
    if any(len(t) > 100 for t in tags):
        raise RecordError("tags", "a tag is longer than 100 characters")
    return tags


def prompt_record(record: Any) -> PromptRecord:
    if not isinstance(record, dict):
        raise RecordError("", "must be an object with a 'prompt' field")
    if "prompt" not in record:
        raise RecordError("prompt", "is missing")
    messages = messages_from(record["prompt"], "prompt", default_role="user")
    if messages[-1]["role"] != "user":
        raise RecordError("prompt", "the last message must come from the user")
    if any(m["role"] == "system" for m in messages[1:]):
        raise RecordError("prompt", "a system message may only come first")
    return PromptRecord(messages=messages, external_id=_external_id(record), tags=_tags(record))


def _model_name(record: dict[str, Any], key: str) -> str:
    value = record.get(key) or ""
    if not isinstance(value, str) or len(value) > 200:
        raise RecordError(key, "must be a string of at most 200 characters")
    return value


def pair_record(record: Any) -> PairRecord:
    prompt = prompt_record(record)
    sides = {}
    for key in ("chosen", "rejected"):
        if key not in record:
            raise RecordError(key, "is missing")
        messages = messages_from(record[key], key, default_role="assistant")
        if any(m["role"] != "assistant" for m in messages):
            raise RecordError(key, "every message must come from the assistant")
        sides[key] = messages
    if sides["chosen"] == sides["rejected"]:
        raise RecordError("rejected", "is identical to 'chosen'")
    return PairRecord(
        prompt=prompt,
        chosen=sides["chosen"],
        rejected=sides["rejected"],
        chosen_model=_model_name(record, "chosen_model"),
        rejected_model=_model_name(record, "rejected_model"),
    )


def read_records(stream: IO[bytes], *, name: str, fmt: str | None, kind: str) -> list[Any]:
    """Validate the whole file; return its records, or raise naming every bad line and field."""
    parse = pair_record if kind == "pairs" else prompt_record
    records: list[Any] = []
    errors: list[str] = []
    try:
        for where, raw in iter_raw_records(stream, name=name, fmt=detect_format(name, fmt)):
            try:
                if isinstance(raw, RecordError):
                    raise raw
                records.append(parse(raw))
            except RecordError as exc:
                field_part = f", field '{exc.field_name}'" if exc.field_name else ""
                errors.append(f"{where}{field_part}: {exc}")
    except UnicodeDecodeError as exc:
        errors.append(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except csv.Error as exc:
        errors.append(f"{name}: malformed CSV ({exc})")
    if errors:
        raise ImportFileError(errors)
    if not records:
        raise ImportFileError([f"{name}: no records found"])
    return records


def assistant_text(messages: list[Message]) -> str:
    return "\n\n".join(m["content"] for m in messages)
