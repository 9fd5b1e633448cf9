"""Reading and validating import files: JSONL, CSV and Parquet records in TRL's formats.

Everything here is pure (no database): ``RecordReader`` streams a file through validation and
hands out valid records in batches; every fault is named by file, line (or row) and the field's
JSON path, and gathered (up to ``MAX_ERRORS``) into one ``ImportFileError``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from annotate.import_files import (
    FileError,
    RecordError,
    SeenIds,
    csv_records,
    file_digest,
    jsonl_records,
    parquet_records,
)

ROLES = ("system", "user", "assistant")
FORMATS = ("jsonl", "csv", "parquet")
# The most faults one import reports: enough to show a pattern (a column of the wrong type,
# every line of a file in another encoding) without burying the page; reading stops there.
MAX_ERRORS = 20

Message = dict[str, str]

__all__ = ["RecordError", "file_digest"]


class ImportFileError(ValueError):
    """A file that cannot be imported; ``errors`` lists its faults, at most ``MAX_ERRORS``.

    ``stopped`` says the file had more, left unread.
    """

    def __init__(self, errors: list[str], *, stopped: bool = False):
        self.errors = errors
        self.stopped = stopped
        more = f"\n(stopped after the first {len(errors)} problems)" if stopped else ""
        super().__init__("\n".join(errors) + more)


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
    # The file says neither side is better: a gold import expects a tie here.
    tie: bool = False


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


_JSON_KINDS = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def _kind(value: Any) -> str:
    """What a value is, in JSON's words, for messages such as "expected a string, got a list"."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _text(value: Any, field_name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise RecordError(field_name, f"expected a string, got {_kind(value)}")
    if not value.strip():
        raise RecordError(field_name, "must not be empty")
    if len(value) > limit:
        raise RecordError(field_name, f"is {len(value)} characters long; the limit is {limit}")
    return value


def messages_from(value: Any, field_name: str, *, default_role: str, limit: int) -> list[Message]:
    """A string becomes one message with ``default_role``; a list must be ``{"role", "content"}`` dicts.

    ``limit`` is the longest text allowed (``DUET_MAX_TEXT_CHARS``, read once per file: the lazy
    settings object cost a sixth of the validation time when read for every message).
    """
    if isinstance(value, str):
        return [{"role": default_role, "content": _text(value, field_name, limit)}]
    if not isinstance(value, list) or not value:
        raise RecordError(
            field_name, f"expected a string or a non-empty list of {{role, content}} messages, got {_kind(value)}"
        )
    messages = []
    for i, item in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(item, dict):
            raise RecordError(where, f"expected an object with 'role' and 'content', got {_kind(item)}")
        role = item.get("role")
        if role not in ROLES:
            raise RecordError(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        messages.append({"role": role, "content": _text(item.get("content"), f"{where}.content", limit)})
    return messages


def _external_id(record: dict[str, Any]) -> str:
    value = record.get("id")
    if value is None or value == "":
        return ""
    if not isinstance(value, str | int):
        raise RecordError("id", f"expected a string or an integer, got {_kind(value)}")
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


def prompt_record(record: Any, *, limit: int) -> PromptRecord:
    if not isinstance(record, dict):
        raise RecordError("", f"expected an object with a 'prompt' field, got {_kind(record)}")
    if "prompt" not in record:
        raise RecordError("prompt", "is missing")
    messages = messages_from(record["prompt"], "prompt", default_role="user", limit=limit)
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


def pair_record(record: Any, *, limit: int) -> PairRecord:
    prompt = prompt_record(record, limit=limit)
    sides = {}
    for key in ("chosen", "rejected"):
        if key not in record:
            raise RecordError(key, "is missing")
        messages = messages_from(record[key], key, default_role="assistant", limit=limit)
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
        tie=_tie(record),
    )


def _tie(record: dict[str, Any]) -> bool:
    value = record.get("tie", False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RecordError("tie", f"expected true or false, got {_kind(value)}")
    return value


class RecordReader:
    """Streams one file through validation, handing out valid records in batches.

    Batches stop at the first fault (so nothing after it is written), while reading goes on to
    report up to ``MAX_ERRORS`` faults; ``finish`` then raises them all. A caller writing the
    batches inside one transaction and calling ``finish`` inside it too stays atomic.
    """

    def __init__(self, stream: IO[bytes], *, name: str, fmt: str | None, kind: str):
        self.name = name
        self.records = 0
        self.errors: list[str] = []
        self.stopped = False
        self._stream = stream
        self._fmt = detect_format(name, fmt)
        self._kind = kind

    def batches(self, size: int) -> Iterator[list[Any]]:
        batch: list[Any] = []
        for record in self._valid_records():
            if self.errors:
                continue
            batch.append(record)
            if len(batch) == size:
                yield batch
                batch = []
        if batch and not self.errors:
            yield batch

    def finish(self) -> None:
        """Raise every fault found, or that the file held no records."""
        if self.errors:
            raise ImportFileError(self.errors, stopped=self.stopped)
        if not self.records:
            raise ImportFileError([f"{self.name}: no records found"])

    def _raw_records(self) -> Iterator[tuple[str, Any]]:
        if self._fmt == "jsonl":
            return jsonl_records(self._stream)
        if self._fmt == "csv":
            return csv_records(self._stream)
        required = ("prompt",) if self._kind == "prompts" else ("prompt", "chosen", "rejected")
        return parquet_records(self._stream, required=required)

    def _valid_records(self) -> Iterator[Any]:
        parse = functools.partial(
            pair_record if self._kind == "pairs" else prompt_record, limit=settings.DUET_MAX_TEXT_CHARS
        )
        seen = SeenIds()
        try:
            for where, raw in self._raw_records():
                try:
                    if isinstance(raw, RecordError):
                        raise raw
                    record = parse(raw)
                    _check_id_once(seen, record, where)
                except RecordError as exc:
                    field_part = f", field '{exc.field_name}'" if exc.field_name else ""
                    if not self._fault(f"{self.name} {where}{field_part}: {exc}"):
                        return
                    continue
                self.records += 1
                yield record
        except FileError as exc:
            self._fault(f"{self.name}: {exc}")
        except csv.Error as exc:
            self._fault(f"{self.name}: malformed CSV ({exc})")
        finally:
            seen.close()

    def _fault(self, message: str) -> bool:
        """Note a fault; False once the limit is passed (the file has more than we report)."""
        if len(self.errors) >= MAX_ERRORS:
            self.stopped = True
            return False
        self.errors.append(message)
        return True


def _check_id_once(seen: SeenIds, record: PromptRecord | PairRecord, where: str) -> None:
    external_id = record.prompt.external_id if isinstance(record, PairRecord) else record.external_id
    if not external_id:
        return
    earlier = seen.earlier(external_id, where)
    if earlier is not None:
        raise RecordError("id", f"{external_id!r} is also the id on {earlier}")


def read_records(stream: IO[bytes], *, name: str, fmt: str | None, kind: str) -> list[Any]:
    """The whole file's records as a list, or ``ImportFileError``; for small files (tests, demo)."""
    reader = RecordReader(stream, name=name, fmt=fmt, kind=kind)
    records = [record for batch in reader.batches(sys.maxsize) for record in batch]
    reader.finish()
    return records


def assistant_text(messages: list[Message]) -> str:
    return "\n\n".join(m["content"] for m in messages)
