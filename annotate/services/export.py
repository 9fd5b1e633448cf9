"""Writing TRL's preference dataset (JSONL, Parquet, a ``datasets`` folder) from the judgements."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils import timezone

from annotate import selectors
from annotate.filters import TRUSTED_JUDGEMENTS, JudgementFilter
from annotate.models import AuditAction
from annotate.services.audit import audit_record

EXPORT_FORMATS = ("jsonl", "parquet", "hf")
# Rows per Parquet row group: memory holds this many rows at once (as dicts and as Arrow),
# whatever the dataset's size, and the groups stay large enough to read back quickly.
PARQUET_BATCH_ROWS = 1000
# An export job writes its progress once per this many rows: a write per row group, not per row.
PROGRESS_ROWS = 1000


@dataclass(frozen=True)
class ExportResult:
    """What was written, and exactly which comparisons and judgements it was built from.

    ``comparison_ids`` are the rows' comparisons, in row order; ``judgement_ids`` are the
    judgements (after the filter) that decided those rows, grouped by comparison in the same order.
    """

    path: str
    rows: int
    skipped_multi_turn: int
    comparison_ids: tuple[int, ...]
    judgement_ids: tuple[int, ...]

    def summary(self) -> str:
        note = (
            f"; {self.skipped_multi_turn} multi-turn prompts left out (use --conversational to keep them)"
            if self.skipped_multi_turn
            else ""
        )
        return f"wrote {self.rows} preference rows to {self.path}{note}"


def _arrow_schema(conversational: bool) -> Any:
    import pyarrow as pa

    text: Any = (
        pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])) if conversational else pa.string()
    )
    return pa.schema(
        [
            ("prompt", text),
            ("chosen", text),
            ("rejected", text),
            ("comparison_id", pa.int64()),
            ("agreement", pa.float64()),
            ("num_judgements", pa.int64()),
            ("chosen_model", pa.string()),
            ("rejected_model", pa.string()),
            ("adjudicated", pa.bool_()),
            ("campaign", pa.string()),
        ]
    )


def _write_parquet(rows: Iterator[dict[str, Any]], path: Path, conversational: bool) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(conversational)
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        while batch := list(itertools.islice(rows, PARQUET_BATCH_ROWS)):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count


def _reporting(rows: Iterator[dict[str, Any]], progress: Callable[[int], None]) -> Iterator[dict[str, Any]]:
    count = 0
    for count, row in enumerate(rows, start=1):
        yield row
        if count % PROGRESS_ROWS == 0:
            progress(count)
    progress(count)


def _write_jsonl(rows: Iterator[dict[str, Any]], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def _save_to_disk(parquet: Path, tmp: Path, *, rows: int, conversational: bool) -> Path:
    """A ``datasets.save_to_disk`` folder made from the Parquet file, so memory stays flat.

    ``datasets`` cannot read a Parquet file without rows (pyarrow refuses a batch size of 0), so an
    export that matched nothing is saved from the empty table: the same columns and types, no rows.
    It is saved as one (empty) shard: with none, ``load_from_disk`` fails on the folder.
    """
    import datasets

    folder = tmp / "dataset"
    if rows == 0:
        dataset = datasets.Dataset(_arrow_schema(conversational).empty_table())
        dataset.save_to_disk(str(folder), num_shards=1)
    else:
        dataset = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(tmp / "cache"))
        dataset.save_to_disk(str(folder))
    del dataset
    return folder


def export_preferences(
    *,
    path: str | Path,
    fmt: str,
    conversational: bool = False,
    judgement_filter: JudgementFilter = TRUSTED_JUDGEMENTS,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write TRL's preference dataset from the judgements, streaming, and replace ``path`` atomically.

    ``hf`` writes a ``datasets.save_to_disk`` folder. The result names the comparisons and
    judgements the rows came from, so a caller can record them without filtering again.
    ``progress`` is told the rows written so far every ``PROGRESS_ROWS`` rows.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tally = selectors.ExportTally()
    rows = selectors.preference_rows(judgement_filter=judgement_filter, conversational=conversational, tally=tally)
    if progress is not None:
        rows = _reporting(rows, progress)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as tmp:
        staging = Path(tmp) / "data"
        if fmt == "jsonl":
            count = _write_jsonl(rows, staging)
        else:
            count = _write_parquet(rows, staging, conversational)
        if fmt == "hf":
            staging = _save_to_disk(staging, Path(tmp), rows=count, conversational=conversational)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging, target)
    audit_record(action=AuditAction.EXPORT, detail={"path": str(target), "format": fmt, "rows": count})
    return ExportResult(
        path=str(target),
        rows=count,
        skipped_multi_turn=tally.skipped_multi_turn,
        comparison_ids=tuple(tally.comparison_ids),
        judgement_ids=tuple(tally.judgement_ids),
    )


def export_download(
    *,
    directory: Path,
    fmt: str,
    conversational: bool = False,
    judgement_filter: JudgementFilter = TRUSTED_JUDGEMENTS,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Export into ``directory`` as one file to send: the dataset itself, or a zip of the ``hf`` folder."""
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    style = "conversational" if conversational else "standard"
    name = f"preferences-{style}-{stamp}"
    suffix = {"jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}.get(fmt, "")
    result = export_preferences(
        path=directory / f"{name}{suffix}", fmt=fmt, conversational=conversational, judgement_filter=judgement_filter,
        progress=progress,
    )
    if fmt != "hf":
        return Path(result.path)
    return Path(shutil.make_archive(str(directory / name), "zip", root_dir=result.path))
