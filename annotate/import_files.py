"""Turning an import file's bytes into raw records, one line (or Parquet batch) at a time.

Each raw record comes with its place in the file (``line 12``, ``row 7``) so that every fault,
the file's own (bad bytes, broken JSON, a Parquet column of the wrong type) or a record's, names
where it is. Nothing here reads a whole file into memory. Pure: no database.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import IO, Any


class RecordError(ValueError):
    """A fault in one record; ``field_name`` is its JSON path inside the record ("" for the whole)."""

    def __init__(self, field_name: str, message: str):
        self.field_name = field_name
        super().__init__(message)


class FileError(ValueError):
    """A fault in the file as a whole (no readable Parquet, a column of the wrong type)."""


# Read in pieces of this size when hashing, so memory stays flat whatever the file's size.
_HASH_CHUNK_BYTES = 1 << 20

# Ids seen so far are kept in a dict up to this many (a few MB), then move to a temporary
# SQLite file on disk: a file of millions of records is checked for duplicate ids in flat memory.
_IDS_IN_MEMORY = 50_000


def file_digest(stream: IO[bytes]) -> str:
    """SHA-256 of the stream's bytes from where it stands; the stream is put back there."""
    start = stream.tell()
    digest = hashlib.sha256()
    while chunk := stream.read(_HASH_CHUNK_BYTES):
        digest.update(chunk)
    stream.seek(start)
    return digest.hexdigest()


def _decoded_lines(stream: IO[bytes]) -> Iterator[tuple[int, str | RecordError]]:
    """Yield ``(line number, text)``, or a ``RecordError`` naming the column of a byte that is not UTF-8.

    A UTF-8 byte-order mark is dropped; CRLF endings are left to the parsers, which take them as
    whitespace. Lines are counted as an editor counts them, blank ones included.
    """
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = len(raw[: exc.start].decode("utf-8")) + 1
            bad = raw[exc.start]
            message = f"not UTF-8 text at column {column} (byte 0x{bad:02x}: {exc.reason})"
            yield number, RecordError("", message)


def jsonl_records(stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
    """Yield ``("line N", record or RecordError)``; blank lines are skipped but still counted."""
    for number, text in _decoded_lines(stream):
        where = f"line {number}"
        if isinstance(text, RecordError):
            yield where, text
        elif text.strip():
            try:
                yield where, json.loads(text)
            except json.JSONDecodeError as exc:
                yield where, RecordError("", f"invalid JSON at column {exc.colno}: {exc.msg}")


def csv_records(stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
    """Yield ``("row N", record or RecordError)``, rows numbered as a spreadsheet shows them."""
    undecodable: list[tuple[int, RecordError]] = []

    def text_lines() -> Iterator[str]:
        for number, text in _decoded_lines(stream):
            if isinstance(text, RecordError):
                undecodable.append((number, text))
                yield ""
            else:
                yield text

    reader = csv.DictReader(text_lines())
    # Row 1 is the header, so the first record sits on row 2.
    for number, row in enumerate(reader, start=2):
        while undecodable:
            line, error = undecodable.pop(0)
            yield f"line {line}", error
        yield f"row {number}", {k: _csv_cell(v) for k, v in row.items() if k is not None}
    for line, error in undecodable:
        yield f"line {line}", error


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


MESSAGES_TYPE = "a string or a list of {role: string, content: string}"
_EXPECTED_COLUMNS = {
    "prompt": MESSAGES_TYPE,
    "chosen": MESSAGES_TYPE,
    "rejected": MESSAGES_TYPE,
    "id": "a string or an integer",
    "tags": "a string or a list of strings",
    "chosen_model": "a string",
    "rejected_model": "a string",
}


def _column_fits(column: str, arrow_type: Any) -> bool:
    import pyarrow as pa

    def text(t: Any) -> bool:
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))

    def listed(t: Any) -> Any:
        return t.value_type if pa.types.is_list(t) or pa.types.is_large_list(t) else None

    item = listed(arrow_type)
    if column in ("prompt", "chosen", "rejected"):
        if text(arrow_type):
            return True
        if item is None or not pa.types.is_struct(item):
            return False
        fields = {item.field(i).name: item.field(i).type for i in range(item.num_fields)}
        return all(key in fields and text(fields[key]) for key in ("role", "content"))
    if column == "id":
        return text(arrow_type) or bool(pa.types.is_integer(arrow_type))
    if column == "tags":
        return text(arrow_type) or (item is not None and text(item))
    return text(arrow_type)


def parquet_records(stream: IO[bytes], *, required: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """Yield ``("row N", record)`` batch by batch, after checking the columns' names and types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileError(f"not a readable Parquet file ({exc})") from exc
    schema = table.schema_arrow
    faults = [f"column '{c}' is missing; expected {_EXPECTED_COLUMNS[c]}" for c in required if c not in schema.names]
    for name in schema.names:
        arrow_type = schema.field(name).type
        if name in _EXPECTED_COLUMNS and not pa.types.is_null(arrow_type) and not _column_fits(name, arrow_type):
            faults.append(f"column '{name}' is {arrow_type}; expected {_EXPECTED_COLUMNS[name]}")
    if faults:
        raise FileError("; ".join(faults))
    number = 0
    for batch in table.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield f"row {number}", row


class SeenIds:
    """Where each record id was first seen, to name both places of a duplicate.

    Held in a dict up to ``_IDS_IN_MEMORY`` ids, then in a private temporary SQLite database
    (deleted when closed), so memory stays flat however many records the file has.
    """

    def __init__(self) -> None:
        self._memory: dict[str, str] = {}
        self._disk: sqlite3.Connection | None = None

    def earlier(self, record_id: str, where: str) -> str | None:
        """Remember ``record_id`` at ``where``; return where it was seen before, if it was."""
        if self._disk is None:
            first = self._memory.setdefault(record_id, where)
            if len(self._memory) > _IDS_IN_MEMORY:
                self._spill()
            return None if first == where else first
        if self._disk.execute("INSERT OR IGNORE INTO ids VALUES (?, ?)", (record_id, where)).rowcount:
            return None
        row = self._disk.execute("SELECT place FROM ids WHERE id = ?", (record_id,)).fetchone()
        return str(row[0])

    def _spill(self) -> None:
        self._disk = sqlite3.connect("")
        self._disk.execute("PRAGMA journal_mode = OFF")
        self._disk.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, place TEXT NOT NULL) WITHOUT ROWID")
        self._disk.executemany("INSERT INTO ids VALUES (?, ?)", self._memory.items())
        self._memory = {}

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()
            self._disk = None
