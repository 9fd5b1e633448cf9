"""The newcomer's path, measured: demo data, every demo pair judged, **next round** with the form as it comes.

    .venv/bin/python -m bench.newcomer_round [--oracle shorter] [--reuse-db]

What a new user does after ``scripts/start``, on a fresh PostgreSQL database ``duet_newcomer``:
load the demo (``seed_demo``), let the default model write the demo's first round
(``seed_round``), have a scripted annotator with one consistent preference judge every open
comparison, then start **next round** with the run form's initial values (``TrainingRunForm``
exactly as the page draws it). A burst worker (``manage.py rqworker gpu default``) runs each job.

It prints what the run resolved (pairs, held-out pairs, optimiser steps, epochs, effective batch,
learning rate, warm-up), the held-out reward accuracy and margin before and after training, the
run's verdict, whether the run page shows the held-out accuracy, and the wall time of each phase.
The next-round generation chained to the run is cancelled once training ends: its cost is the
generation's, measured by ``simulate_round``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

HOST = "127.0.0.1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
DATABASE = "duet_newcomer"
ROOT = Path(__file__).resolve().parent.parent


def _fresh_database() -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')


def _burst_worker() -> float:
    """Run every queued job with a real worker; return its wall time."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "manage.py", "rqworker", "gpu", "default", "--burst"],
        cwd=ROOT, env=os.environ.copy(), check=True, stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def _judge_everything(oracle_name: str) -> int:
    from annotate.models import Comparison
    from training import oracles

    oracle = oracles.oracle_named(oracle_name)
    result = oracles.oracle_judge_open(oracle=oracle, limit=Comparison.objects.count() + 1)
    print(f"{oracle.name} judged {result.judged} comparisons: {result.choices}")
    return result.judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oracle", default="shorter", help="the scripted annotator's preference")
    parser.add_argument(
        "--reuse-db", action="store_true", help="keep the judged demo of an earlier run; only start next round"
    )
    args = parser.parse_args()
    if not args.reuse_db:
        _fresh_database()
    os.environ["DATABASE_URL"] = f"postgres://postgres@{HOST}:5432/{DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    if not args.reuse_db:
        call_command("seed_demo")
        call_command("seed_round")
        print(f"first round generated in {_burst_worker():.0f} s")
        _judge_everything(args.oracle)
    run_id = _start_next_round()
    train_seconds = _burst_worker()
    _report(run_id, train_seconds)


def _start_next_round() -> int:
    """Press **next round** on the default version's page, as the form and button come."""
    from django.contrib.auth.models import User
    from django.test import Client

    from training.models import ModelVersion, TrainingRun

    staff, _ = User.objects.get_or_create(username="newcomer-admin", defaults={"is_staff": True})
    client = Client(SERVER_NAME="localhost")
    client.force_login(staff)
    version = ModelVersion.objects.get(is_default=True)
    response = client.post(f"/training/models/{version.pk}/next-round/")
    assert response.status_code in (200, 302), response.status_code
    return TrainingRun.objects.latest("id").pk


def _report(run_id: int, train_seconds: float) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from training.models import GenerationRun, TrainingRun

    run = TrainingRun.objects.get(pk=run_id)
    GenerationRun.objects.filter(after_training=run, status="queued").update(status="cancelled")
    schedule = run.schedule
    print(f"run {run.pk}: {run.status}; worker wall time {train_seconds:.0f} s")
    print(f"  pairs frozen {run.dataset_rows}, held out {run.heldout_rows}")
    print("  schedule: " + ", ".join(f"{k}={schedule.get(k)}" for k in (
        "regime", "pairs", "total_steps", "epochs", "effective_batch", "optimizer", "lr", "warmup_steps")))
    print(f"  optimiser steps taken: {run.progress_step}")
    for name, values in (("before", run.eval_before), ("after", run.eval_after)):
        print(f"  held-out {name}: accuracy {values.get('eval/rewards/accuracies')}, "
              f"margin {values.get('eval/rewards/margins')}, loss {values.get('eval/loss')}")
    print(f"  learned: {run.learned}; verdict: {run.verdict}")
    client = Client(SERVER_NAME="localhost")
    client.force_login(User.objects.get(username="newcomer-admin"))
    page = client.get(f"/training/runs/{run.pk}/").content.decode()
    accuracy = run.eval_after.get("eval/rewards/accuracies")
    table = page[page.find('data-testid="eval-table"'):]
    shown = accuracy is not None and 'data-testid="eval-table"' in page and f"{accuracy * 100:.0f}%" in table
    print(f"  run page shows the held-out accuracy after training ({accuracy}): {shown}")


if __name__ == "__main__":
    main()
