"""Importing a large pairs file: peak memory at two sizes, and speed against plain ``json.loads``.

    .venv/bin/python -m bench.import_stream [--sizes 100,1000] [--import-sizes 10,100] [--repeat 1] [--dir /tmp]

Writes JSONL pairs files of the given sizes (MB; conversational pairs of about 1 KB, each with
its own ``id``, so nothing deduplicates and the duplicate-id check holds every id) into a
temporary folder, then runs each measurement in a fresh process so its peak RSS is its own:

- ``validate``: ``formats.RecordReader`` over the file, as an import reads it, writing nothing;
- ``peer``: plain ``json.loads`` of each line of the same file, the floor of any JSONL reader;
- ``list``: the whole file's records held in a list (the shape of an import before streaming),
  at the smallest size only;
- ``import``: ``services.pairs_import`` into a throw-away SQLite database (migrated first).

With ``--repeat N`` the peer and the validation alternate N times and the fastest of each is
kept: on a shared machine the least disturbed run is the fairest. Each measurement prints its
throughput (MB/s) and its peak RSS above the process's RSS before the file was opened (Linux's
``VmHWM``, reset through ``/proc/self/clear_refs``). Flat memory reads as a ratio near 1
between the largest and the smallest size. Before writing, the free disk is checked and the
sizes shrink to fit (the script says so).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
# The temporary folder holds the files and an SQLite database a few times the imported size;
# keep this share of the free disk untouched for everyone else on the machine.
DISK_SHARE = 0.5
WORDS = ("the", "model", "answer", "prompt", "pair", "judge", "better", "token", "learn", "reward", "batch", "list")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words))


def _write_pairs(path: Path, size_mb: int) -> int:
    """Write about ``size_mb`` MB of distinct conversational pairs; return how many."""
    rng = random.Random(size_mb)
    target = size_mb * MB
    written = count = 0
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            count += 1
            record = {
                "id": f"pair-{count}",
                "prompt": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": f"Question {count}: {_text(rng, 30)}?"},
                ],
                "chosen": [{"role": "assistant", "content": _text(rng, 50)}],
                "rejected": [{"role": "assistant", "content": _text(rng, 50)}],
                "tags": ["bench"],
            }
            line = json.dumps(record) + "\n"
            out.write(line)
            written += len(line.encode())
    return count


def _peak_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _child(mode: str, path: Path) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from annotate import formats, services

    if mode == "import":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    start_rss = _rss_mb()
    _peak_reset()
    started = time.perf_counter()
    with path.open("rb") as stream:
        if mode == "peer":
            records = sum(1 for line in stream if json.loads(line) is not None)
        elif mode == "validate":
            reader = formats.RecordReader(stream, name=path.name, fmt=None, kind="pairs")
            for _batch in reader.batches(services.imports.BULK_CHUNK):
                pass
            reader.finish()
            records = reader.records
        elif mode == "list":
            records = len(formats.read_records(stream, name=path.name, fmt=None, kind="pairs"))
        else:
            records = services.pairs_import(stream=stream, name=path.name).comparisons_created
    seconds = time.perf_counter() - started
    return {"records": records, "seconds": seconds, "growth_mb": max(_peak_mb() - start_rss, 0.0)}


def _measure(mode: str, path: Path, database: Path) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "bench.import_stream", "--child", mode, str(path)]
    done = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["mb_per_s"] = path.stat().st_size / MB / result["seconds"]
    return result


def _fit_to_disk(folder: Path, sizes: list[int], import_sizes: list[int]) -> tuple[list[int], list[int]]:
    """Shrink the sizes until the files and the databases fit in DISK_SHARE of the free disk."""
    free_mb = shutil.disk_usage(folder).free / MB * DISK_SHARE
    # Each import's SQLite database holds about three times its file (rows, indexes, JSON).
    while sum(sizes) + 4 * sum(import_sizes) > free_mb and max(sizes) > 1:
        sizes = [max(s // 2, 1) for s in sizes]
        import_sizes = [max(s // 2, 1) for s in import_sizes]
        print(f"free disk is tight ({free_mb:.0f} MB usable): sizes halved to {sizes} MB and {import_sizes} MB")
    return sizes, import_sizes


def _report(mode: str, size: int, result: dict[str, Any], peer: dict[str, Any] | None) -> None:
    line = (
        f"{mode:>8} {size:>6} MB  {result['records']:>9} records  {result['seconds']:7.1f} s  "
        f"{result['mb_per_s']:6.1f} MB/s  peak RSS +{result['growth_mb']:7.1f} MB"
    )
    if peer is not None:
        line += f"  ({result['mb_per_s'] / peer['mb_per_s']:.2f}x plain json.loads' speed)"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="file sizes to validate, MB (comma-separated)")
    parser.add_argument("--import-sizes", default="10,100", help="file sizes to import into SQLite, MB")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run peer and validate this many times, alternately; keep the fastest"
    )
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary folder goes")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], Path(args.child[1]))))
        return
    sizes, import_sizes = _fit_to_disk(
        Path(args.dir), [int(s) for s in args.sizes.split(",")], [int(s) for s in args.import_sizes.split(",")]
    )
    folder = Path(tempfile.mkdtemp(prefix="duet-import-bench-", dir=args.dir))
    try:
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for size in sorted(set(sizes) | set(import_sizes)):
            path = folder / f"pairs-{size}mb.jsonl"
            count = _write_pairs(path, size)
            print(f"wrote {path.name}: {count} pairs, {path.stat().st_size / MB:.0f} MB", flush=True)
            modes = (["peer", "validate"] * args.repeat if size in sizes else []) + (
                ["list"] if size == min(sizes) else []
            )
            modes += ["import"] if size in import_sizes else []
            for mode in modes:
                result = _measure(mode, path, folder / f"import-{size}.sqlite3")
                _report(mode, size, result, None if mode == "peer" else results.get(("peer", size)))
                best = results.get((mode, size))
                results[mode, size] = result if best is None or result["seconds"] < best["seconds"] else best
            if args.repeat > 1 and size in sizes:
                _report("best", size, results["validate", size], results["peer", size])
            path.unlink()
        for mode, chosen in (("validate", sizes), ("import", import_sizes)):
            small, large = results[mode, min(chosen)]["growth_mb"], results[mode, max(chosen)]["growth_mb"]
            print(
                f"{mode}: {max(chosen) / min(chosen):.0f}x the file, {large / max(small, 1):.2f}x "
                f"the peak RSS growth ({small:.1f} -> {large:.1f} MB)"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
