"""``python -m bench.annotate_load``: parse the options, seed, serve, load, check, report."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.annotate_load.clients import run_phases
from bench.annotate_load.database import DATABASE, DATABASE_URL, database_drop, database_prepare, seed
from bench.annotate_load.invariants import invariants_check
from bench.annotate_load.report import TARGET_OPEN_RATE, report
from bench.annotate_load.server import Gunicorn, free_port

# Open comparisons by default: room for far more than 2 cores can judge (well under 1,000
# judgements/s) plus a spare margin, so nobody runs dry.
CEILING_JUDGEMENTS_PER_S = 1000
SPARE_COMPARISONS = 1000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.annotate_load",
        description=(
            "N annotators against Duet's JSON API on gunicorn + PostgreSQL (database duet_bench on 127.0.0.1), "
            "compared with a trivial view on the same server; then checks the vote invariants with SQL."
        ),
    )
    parser.add_argument("--annotators", type=int, default=50, help="concurrent annotators (closed loop clients)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each of the four phases")
    parser.add_argument("--rate", type=float, default=TARGET_OPEN_RATE, help="open-loop judgements per second")
    parser.add_argument("--k", type=int, default=3, help="judgements wanted per comparison")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (gthread)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--comparisons", type=int, default=0, help="open comparisons to seed (default: enough for the run)"
    )
    parser.add_argument(
        "--history", type=int, default=5000, help="comparisons judged k times before the run (a database in use)"
    )
    parser.add_argument(
        "--campaign", default="", help="serve a campaign of this slug (created for the run); default: the default one"
    )
    parser.add_argument(
        "--gold-rate", type=float, default=0.0, help="the campaign's share of gold cards, 0 to 1 (gold items seeded)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of choices and arrivals")
    parser.add_argument("--keep-db", action="store_true", help=f"keep the {DATABASE} database afterwards")
    args = parser.parse_args(argv)
    if min(args.annotators, args.k, args.workers, args.threads) < 1 or args.seconds <= 0 or args.rate <= 0:
        parser.error("--annotators, --k, --workers, --threads, --seconds and --rate must be positive")
    if not 0 <= args.gold_rate < 1:
        parser.error("--gold-rate must be at least 0 and below 1")
    if args.k > args.annotators or args.history < 0:
        parser.error("--k may not exceed --annotators (nobody judges twice), and --history may not be negative")
    if not args.comparisons:
        args.comparisons = math.ceil((CEILING_JUDGEMENTS_PER_S + args.rate) * args.seconds / args.k) + SPARE_COMPARISONS
    return args


def setup_line(args: argparse.Namespace, seeding: float, log: Path) -> str:
    """The report's heading: the server, the database and the load the run was measured on."""
    return (
        f"Duet annotator API load benchmark: gunicorn gthread {args.workers} workers x {args.threads} threads, "
        f"PostgreSQL {DATABASE} (persistent connections), {os.cpu_count()} CPUs shared with the load generator\n"
        f"{args.annotators} annotators, k={args.k}, {args.comparisons} open comparisons and {args.history} judged "
        f"{args.k} times before the run, seeded in {seeding:.1f} s, "
        f"{args.seconds:g} s per phase; campaign {args.campaign or 'default'}, gold rate {args.gold_rate:g}; "
        f"server log: {log}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["DATABASE_CONN_MAX_AGE"] = "0"
    import django

    django.setup()

    try:
        began = time.perf_counter()
        database_prepare()
        seeded = seed(
            annotators=args.annotators,
            comparisons=args.comparisons,
            history=args.history,
            k=args.k,
            campaign=args.campaign,
            gold_rate=args.gold_rate,
        )
        seeding = time.perf_counter() - began
        log = Path(tempfile.mkstemp(prefix="duet-bench-gunicorn-", suffix=".log")[1])
        server = Gunicorn(port=free_port(), workers=args.workers, threads=args.threads, log=log)
        try:
            asyncio.run(server.wait_ready())
            phases = asyncio.run(run_phases(args, server, seeded.accounts))
        finally:
            server.stop()
        checks, unacknowledged = invariants_check(
            [a for p in phases for a in p.accepted],
            {vote for p in phases for vote in p.unanswered},
            seeded.last_history_judgement,
        )
    finally:
        if not args.keep_db:
            database_drop()
    return 0 if report(args, phases, checks, unacknowledged, setup_line(args, seeding, log)) else 1


if __name__ == "__main__":
    sys.exit(main())
