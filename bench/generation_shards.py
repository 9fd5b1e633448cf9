"""A generation round's wall time on one worker against two, each on one CPU thread: what sharding buys.

    .venv/bin/python -m bench.generation_shards [--prompts 128] [--shard-prompts 32] [--max-new-tokens 16]
        [--model tiny|default]

On a fresh PostgreSQL database ``duet_bench_shards`` it imports the prompts, then runs the same round
(same version, settings and seed) twice: with one ``manage.py rqworker gpu`` listening, then with two.
Each worker is its own process with ``OMP_NUM_THREADS=1``, as two small GPU hosts would each have their own
device. The round's time is from its start (the web's call) to its close (the last shard's), with the
workers already listening, so their start-up is not counted; each worker loads the model once per shard.
It prints both times, their ratio, how many shards ran at once on average, and whether the two rounds
wrote the same samples (they should: a round's seeds do not depend on how it was cut or who took which part).

``tiny`` is the tests' two-layer Llama with SmolLM2's tokenizer; ``default`` is the registered default model.
The Redis database is claimed the way the tests claim theirs, so that no test run's worker takes these jobs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

HOST = "127.0.0.1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
DATABASE = "duet_bench_shards"
ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.1


def _fresh_database() -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')


def _workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    started = []
    for index in range(count):
        log = logs / f"worker-{count}-{index}.log"
        started.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", "gpu"],
                cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )
        )
        while "Listening on" not in log.read_text(errors="replace"):
            time.sleep(POLL_SECONDS)
    return started


def _round(
    version: Any, args: argparse.Namespace, workers: int, env: dict[str, str], logs: Path
) -> tuple[Any, float]:
    from training import services

    processes = _workers(workers, env, logs)
    try:
        started = time.monotonic()
        run = services.generation_run_start(
            model_version=version, pairing="self", n=2, max_new_tokens=args.max_new_tokens, temperature=1.0, seed=7
        )
        while True:
            run.refresh_from_db()
            if run.is_finished:
                break
            time.sleep(POLL_SECONDS)
        seconds = time.monotonic() - started
    finally:
        for process in processes:
            os.killpg(process.pid, 15)
            process.wait(timeout=60)
    if run.status != "succeeded":
        raise SystemExit(f"{run}: {run.status}: {run.error}")
    return run, seconds


def _samples(run: Any) -> dict[tuple[int, int], str]:
    from annotate.models import Completion

    rows = Completion.objects.filter(generation__generation_run=run.pk).values_list("prompt_id", "generation", "text")
    return {(prompt_id, generation["sample"]): text for prompt_id, generation, text in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--shard-prompts", type=int, default=32, help="DUET_GENERATION_SHARD_PROMPTS")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--model", choices=("tiny", "default"), default="tiny")
    args = parser.parse_args()
    _fresh_database()
    os.environ["DATABASE_URL"] = f"postgres://postgres@{HOST}:5432/{DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from annotate.services import prompts_import
    from tests.conftest import redis_db_claim
    from training import services
    from training.models import ModelVersion

    redis_url, release = redis_db_claim(settings.REDIS_URL)
    settings.RQ_QUEUES = {name: {**config, "URL": redis_url} for name, config in settings.RQ_QUEUES.items()}
    call_command("migrate", verbosity=0, interactive=False)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if args.model == "tiny":
            from tests.conftest import tiny_model_save

            version = ModelVersion.objects.create(name="tiny", path=str(tiny_model_save(work / "tiny")))
        else:
            version = services.default_model_version()
        lines = (json.dumps({"prompt": f"Question {i}: name a colour and say why."}) for i in range(args.prompts))
        prompts_import(stream=io.BytesIO("\n".join(lines).encode()), name="bench.jsonl")
        env = {
            **os.environ, "OMP_NUM_THREADS": "1", "REDIS_URL": redis_url, "DUET_RUNS_DIR": str(work / "runs"),
            "DUET_GENERATION_SHARD_PROMPTS": str(args.shard_prompts),
        }
        try:
            one, one_seconds = _round(version, args, 1, env, work)
            two, two_seconds = _round(version, args, 2, env, work)
        finally:
            release()
    shards = two.shards.count()
    takers = set(two.shards.values_list("worker_name", flat=True))
    print(f"{args.prompts} prompts x 2 samples x {args.max_new_tokens} new tokens, model {version.name}, "
          f"{shards} shards of {args.shard_prompts}, OMP_NUM_THREADS=1 per worker, {os.cpu_count()} CPUs")
    print(f"one worker:  {one_seconds:6.1f} s")
    print(f"two workers: {two_seconds:6.1f} s (shards taken by {len(takers)} workers)")
    print(f"speed-up:    {one_seconds / two_seconds:.2f}x")
    for label, run, seconds in (("one worker", one, one_seconds), ("two workers", two, two_seconds)):
        busy = sum((s.finished_at - s.started_at).total_seconds() for s in run.shards.all())
        # Above 1, shards overlapped; with two workers on two free cores it nears 2 and the speed-up with it.
        print(f"{label}: shards busy {busy:.1f} s in all, {busy / seconds:.2f} at once on average")
    print(f"same samples in both rounds: {_samples(one) == _samples(two)}")


if __name__ == "__main__":
    main()
