"""Load benchmark of the annotator API: many annotators at once over HTTP, gunicorn on PostgreSQL.

    .venv/bin/python -m bench.annotate_load [--annotators 50] [--seconds 20] [--rate 100] [--k 3]

It creates (or reuses) the PostgreSQL database ``duet_bench`` on 127.0.0.1, migrates it, fills
it with annotators, API tokens, a history of judged comparisons and open ones, starts gunicorn (``config.wsgi`` with
``bench.settings``: the project's settings plus one trivial view) and runs four phases of
``--seconds`` each:

1. closed loop, peer: ``--annotators`` clients loop ``GET /api/bench/trivial`` (one query);
2. closed loop, Duet: the same number of annotators loop ``next`` then ``judge`` (random choice),
   no think time;
3. open loop, peer: trivial requests at ``2 * --rate`` per second (Poisson arrivals);
4. open loop, Duet: ``--rate`` judgements per second, Poisson arrivals, each one an idle
   annotator's ``next`` then ``judge``; latency counts from the scheduled time, so a slow server
   cannot hide its queueing by slowing the client down.

The server runs as ``manage.py serve`` runs it (gthread, 2 workers x 4 threads by default) with
persistent database connections. The machine's speed drifts (2 cores shared with other work), so
every Duet number comes with its ratio to the peer measured the same way in the same run, and each
phase prints where the CPU went (gunicorn, PostgreSQL, the load generator, everything else) from
``/proc``. After the server stops, SQL checks the invariants: no comparison over k judgements,
``judgement_count`` equal to the real rows, nobody judging a comparison twice, and exactly one
row for every 201 the clients got. The database is dropped at the end unless ``--keep-db``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from pathlib import Path

import aiohttp
import psycopg

HOST = "127.0.0.1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
DATABASE = "duet_bench"
DATABASE_URL = f"postgres://postgres@{HOST}:5432/{DATABASE}"
ROOT = Path(__file__).resolve().parent.parent
CHOICES = ("left", "right", "tie", "both_bad")
TARGET_CLOSED_JUDGEMENTS_PER_S = 200.0
TARGET_CLOSED_P99_MS = 250.0
TARGET_OPEN_RATE = 100.0
TARGET_OPEN_P99_MS = 100.0
# The issue set target (a) where the trivial view served this at 50 clients on this machine.
REFERENCE_PEER_RPS = 1200.0
REFERENCE_PEER_P99_MS = 134.0
REQUEST_TIMEOUT_S = 30.0
# A client stops only between requests, so a phase may overrun by a request or two; a stuck
# server may not hold the script longer than this past the phase.
DRAIN_TIMEOUT_S = REQUEST_TIMEOUT_S + 10.0
# After a failed request a closed-loop client pauses, so a dead server is not hammered in a busy loop.
ERROR_PAUSE_S = 0.05


# Results ------------------------------------------------------------------------------------


@dataclass
class Phase:
    """What the clients saw in one phase; throughput counts only responses within the window."""

    name: str
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    in_window: Counter[str] = field(default_factory=Counter)
    # (judgement id, comparison id, annotator id) of every 201.
    accepted: list[tuple[int, int, int]] = field(default_factory=list)
    deadline: float = 0.0
    cpu: CpuUse | None = None
    # (comparison id, annotator id) of votes sent whose answer never came (timeout, error, or
    # cancelled at the drain limit): the server may have recorded them without a 201 reaching us.
    in_flight: set[tuple[int, int]] = field(default_factory=set)
    unanswered: set[tuple[int, int]] = field(default_factory=set)

    def give_up(self) -> None:
        self.unanswered |= self.in_flight
        self.in_flight.clear()

    def record(self, endpoint: str, status: int, latency: float, done_at: float) -> None:
        self.latencies[endpoint].append(latency)
        self.statuses[f"{endpoint} {status}"] += 1
        if done_at <= self.deadline:
            self.in_window[f"{endpoint} {status}"] += 1

    def rate(self, endpoint: str, status: int) -> float:
        return self.in_window[f"{endpoint} {status}"] / self.seconds

    def p(self, endpoint: str, q: float) -> float:
        """Nearest-rank percentile in milliseconds (NaN when there is no sample)."""
        values = sorted(self.latencies.get(endpoint, []))
        if not values:
            return math.nan
        return 1000.0 * values[max(0, math.ceil(q * len(values)) - 1)]


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent during a phase, from ``/proc``: who used the shared cores."""

    wall: float
    machine: float
    server: float
    postgres: float
    client: float

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_now(server_pid: int) -> CpuUse | None:
    """Where CPU time has gone so far; None where there is no Linux ``/proc`` to read."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        postgres = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _comm(p) == "postgres"]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = (sum(ticks) - ticks[3] - ticks[4]) / hz
    server = sum(_process_cpu(p) for p in [server_pid, *_children(server_pid)])
    client = sum(os.times()[:2])
    return CpuUse(time.perf_counter(), busy, server, sum(_process_cpu(p) for p in postgres), client)


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


@contextmanager
def cpu_meter(phase: Phase, server_pid: int) -> Iterator[None]:
    before = cpu_now(server_pid)
    yield
    after = cpu_now(server_pid)
    if before is not None and after is not None:
        phase.cpu = after - before


# Database -----------------------------------------------------------------------------------


def database_prepare() -> None:
    """Create ``duet_bench`` if missing, migrate it, and empty the tables the benchmark fills."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{DATABASE}"')
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    from django.contrib.auth import get_user_model

    from annotate.models import ApiToken, Assignment, Comparison, Completion, Judgement, Prompt

    tables = [m._meta.db_table for m in (Judgement, Assignment, Comparison, Completion, Prompt, ApiToken)]
    tables.append(get_user_model()._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def database_drop() -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def _text(rng: random.Random, words: int) -> str:
    vocabulary = [
        "the",
        "model",
        "answer",
        "prompt",
        "token",
        "gradient",
        "policy",
        "reward",
        "human",
        "better",
        "worse",
        "code",
        "list",
        "step",
    ]
    return " ".join(rng.choice(vocabulary) for _ in range(words))


@dataclass(frozen=True)
class Seeded:
    accounts: list[tuple[int, str]]  # (user id, token) of each annotator
    last_history_judgement: int  # judgement ids above this one are the run's


def seed(*, annotators: int, comparisons: int, history: int, k: int) -> Seeded:
    """Annotators with tokens, ``history`` comparisons judged k times already, then open ones.

    The history makes table sizes and planner statistics those of a database in use, so a query
    whose cost grows with past judging shows it here too.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.utils import timezone

    from annotate.models import ApiToken, Assignment, Comparison, Completion, Judgement, Prompt

    rng = random.Random(1)
    total = history + comparisons
    user_model = get_user_model()
    batch = 2000
    with transaction.atomic():
        users = user_model.objects.bulk_create(
            [user_model(username=f"bench-annotator-{i:04d}", password=make_password(None)) for i in range(annotators)]
        )
        tokens = ApiToken.objects.bulk_create([ApiToken(user=u, key=secrets.token_urlsafe(32)) for u in users])
        prompts = Prompt.objects.bulk_create(
            [
                Prompt(
                    messages=[{"role": "user", "content": f"Question {i}: {_text(rng, 40)}"}],
                    content_hash=f"bench-prompt-{i}",
                    source="bench",
                )
                for i in range(total)
            ],
            batch_size=batch,
        )
        completions = Completion.objects.bulk_create(
            [
                Completion(
                    prompt=prompt,
                    messages=[{"role": "assistant", "content": text}],
                    text=text,
                    content_hash=f"bench-completion-{prompt.pk}-{side}",
                    model_name=f"bench-model-{side}",
                )
                for prompt in prompts
                for side in "ab"
                for text in [_text(rng, 120)]
            ],
            batch_size=batch,
        )
        compared = Comparison.objects.bulk_create(
            [
                Comparison(
                    prompt=prompt,
                    completion_a=completions[2 * i],
                    completion_b=completions[2 * i + 1],
                    content_hash=f"bench-comparison-{prompt.pk}",
                    target_judgements=k,
                    judgement_count=k if i < history else 0,
                    source="bench",
                )
                for i, prompt in enumerate(prompts)
            ],
            batch_size=batch,
        )
        now = timezone.now()
        past = [(c, users[(i + j) % annotators]) for i, c in enumerate(compared[:history]) for j in range(k)]
        Assignment.objects.bulk_create(
            [
                Assignment(
                    comparison=c,
                    annotator=u,
                    left_id=c.completion_a_id,
                    right_id=c.completion_b_id,
                    expires_at=now,
                    judged_at=now,
                )
                for c, u in past
            ],
            batch_size=batch,
        )
        Judgement.objects.bulk_create(
            [
                Judgement(
                    comparison=c,
                    annotator=u,
                    source="human",
                    left_id=c.completion_a_id,
                    right_id=c.completion_b_id,
                    choice=choice,
                    winner_id={"left": c.completion_a_id, "right": c.completion_b_id}.get(choice),
                )
                for c, u in past
                for choice in [rng.choice(CHOICES)]
            ],
            batch_size=batch,
        )
        last = Judgement.objects.order_by("-id").values_list("id", flat=True).first() or 0
    # Planner statistics, as a database that has been in use for a while has them.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return Seeded(accounts=[(t.user_id, t.key) for t in tokens], last_history_judgement=last)


@dataclass(frozen=True)
class Check:
    name: str
    violations: int

    @property
    def ok(self) -> bool:
        return self.violations == 0


def invariants_check(
    accepted: Sequence[tuple[int, int, int]], unanswered: set[tuple[int, int]], last_history_judgement: int
) -> tuple[list[Check], int]:
    """SQL over the whole database after the server stopped, and the clients' 201s against the rows."""
    from django.db import connection

    from annotate.models import Assignment, Comparison, Judgement

    comparison, judgement, assignment = (m._meta.db_table for m in (Comparison, Judgement, Assignment))
    queries = {
        "comparisons with more than k judgements (counter or rows)": f"""
            SELECT count(*) FROM {comparison} c
            WHERE c.judgement_count > c.target_judgements
               OR (SELECT count(*) FROM {judgement} j WHERE j.comparison_id = c.id) > c.target_judgements""",
        "comparisons whose judgement_count differs from their judgement rows": f"""
            SELECT count(*) FROM {comparison} c
            LEFT JOIN (SELECT comparison_id, count(*) AS n FROM {judgement} GROUP BY comparison_id) j
              ON j.comparison_id = c.id
            WHERE c.judgement_count <> coalesce(j.n, 0)""",
        "(comparison, annotator) pairs judged more than once": f"""
            SELECT count(*) FROM (
              SELECT 1 FROM {judgement} WHERE annotator_id IS NOT NULL
              GROUP BY comparison_id, annotator_id HAVING count(*) > 1) d""",
        "judgements whose assignment is not marked judged": f"""
            SELECT count(*) FROM {judgement} j
            WHERE j.annotator_id IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM {assignment} a WHERE a.comparison_id = j.comparison_id
                 AND a.annotator_id = j.annotator_id AND a.judged_at IS NOT NULL)""",
    }
    checks = []
    with connection.cursor() as cursor:
        for name, sql in queries.items():
            cursor.execute(sql)
            row = cursor.fetchone()
            checks.append(Check(name, int(row[0]) if row else -1))
        cursor.execute(f"SELECT id, comparison_id, annotator_id FROM {judgement} WHERE annotator_id IS NOT NULL")
        rows = {r[0]: (r[1], r[2]) for r in cursor.fetchall()}
    ids = Counter(j for j, _, _ in accepted)
    checks.append(Check("judgement ids returned by more than one 201", sum(n - 1 for n in ids.values() if n > 1)))
    checks.append(
        Check(
            "201s with no matching row (lost votes)",
            sum(1 for j, c, a in accepted if rows.get(j) != (c, a)),
        )
    )
    unacknowledged = [j for j in rows if j > last_history_judgement and j not in ids]
    # A vote whose answer never came may be recorded once: that is neither lost nor doubled.
    doubled = sum(1 for j in unacknowledged if rows[j] not in unanswered)
    checks.append(Check("rows of the run no client got a 201 for (doubled votes)", doubled))
    return checks, len(unacknowledged) - doubled


# Server -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Gunicorn:
    """gunicorn serving ``config.wsgi`` with the bench settings; ``stop`` ends it and its workers."""

    def __init__(self, *, port: int, workers: int, threads: int, log: Path) -> None:
        self.url = f"http://{HOST}:{port}"
        self.log = log
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": DATABASE_URL,
            # Persistent connections, one per worker thread, as production runs.
            "DATABASE_CONN_MAX_AGE": "600",
            "DJANGO_DEBUG": "0",
        }
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            # Longer than the client's keep-alive, so the client never reuses a closed socket.
            "--keep-alive",
            "30",
            "--graceful-timeout",
            "5",
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log}")
                try:
                    async with session.get(f"{self.url}/api/bench/trivial") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"gunicorn was not ready after {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


# Load ---------------------------------------------------------------------------------------


def connector(limit: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=limit, keepalive_timeout=10, force_close=False)


TIMEOUT = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)


class Annotator:
    """One annotator's client: ``next`` then ``judge`` with a random choice."""

    def __init__(self, *, user_id: int, token: str, url: str, rng: random.Random) -> None:
        self.user_id = user_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.next_url = f"{url}/api/v1/comparisons/next"
        self.judge_url = f"{url}/api/v1/judgements"
        self.rng = rng

    async def turn(self, session: aiohttp.ClientSession, phase: Phase, scheduled: float | None = None) -> bool:
        """One card: fetch and judge it. Latencies count from ``scheduled`` when given (open loop).

        Returns False when the server has nothing left for this annotator.
        """
        started = time.perf_counter() if scheduled is None else scheduled
        try:
            async with session.get(self.next_url, headers=self.headers, timeout=TIMEOUT) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            phase.errors[f"next {type(exc).__name__}"] += 1
            await asyncio.sleep(ERROR_PAUSE_S)
            return True
        fetched = time.perf_counter()
        phase.record("next", status, fetched - started, fetched)
        if status == 204:
            return False
        if status != 200:
            await asyncio.sleep(ERROR_PAUSE_S)
            return True
        card = json.loads(body)
        payload = {
            "comparison": card["id"],
            "left": card["left"]["id"],
            "right": card["right"]["id"],
            "choice": self.rng.choice(CHOICES),
        }
        vote = (card["id"], self.user_id)
        phase.in_flight.add(vote)
        try:
            async with session.post(self.judge_url, json=payload, headers=self.headers, timeout=TIMEOUT) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            phase.in_flight.discard(vote)
            phase.unanswered.add(vote)
            phase.errors[f"judge {type(exc).__name__}"] += 1
            await asyncio.sleep(ERROR_PAUSE_S)
            return True
        phase.in_flight.discard(vote)
        judged = time.perf_counter()
        phase.record("judge", status, judged - fetched, judged)
        if scheduled is not None:
            phase.latencies["card and vote"].append(judged - scheduled)
        if status == 201:
            phase.accepted.append((json.loads(body)["id"], card["id"], self.user_id))
        return True


async def trivial_request(session: aiohttp.ClientSession, url: str, phase: Phase, started: float) -> None:
    try:
        async with session.get(url, timeout=TIMEOUT) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        phase.errors[f"trivial {type(exc).__name__}"] += 1
        await asyncio.sleep(ERROR_PAUSE_S)
        return
    done = time.perf_counter()
    phase.record("trivial", status, done - started, done)


async def closed_loop(
    phase: Phase, clients: int, step: Callable[[aiohttp.ClientSession, int], Awaitable[bool]]
) -> None:
    """``clients`` loops of ``step`` with no think time until the phase's time is up."""
    async with aiohttp.ClientSession(connector=connector(clients)) as session:
        phase.deadline = time.perf_counter() + phase.seconds

        async def loop(client: int) -> None:
            while time.perf_counter() < phase.deadline:
                if not await step(session, client):
                    phase.errors["nothing left to judge (seed more comparisons)"] += 1
                    return

        try:
            await asyncio.wait_for(asyncio.gather(*(loop(c) for c in range(clients))), phase.seconds + DRAIN_TIMEOUT_S)
        except TimeoutError:
            phase.errors["clients cancelled at the drain limit"] += 1
        phase.give_up()


async def open_loop(
    phase: Phase,
    rate: float,
    rng: random.Random,
    limit: int,
    job: Callable[[aiohttp.ClientSession, float], Awaitable[None]],
) -> None:
    """Start ``job`` at Poisson arrivals of ``rate`` per second, whatever the responses do."""
    arrivals: list[float] = []
    t = rng.expovariate(rate)
    while t < phase.seconds:
        arrivals.append(t)
        t += rng.expovariate(rate)
    async with aiohttp.ClientSession(connector=connector(limit)) as session:
        start = time.perf_counter()
        phase.deadline = start + phase.seconds
        running: set[asyncio.Task[None]] = set()
        for offset in arrivals:
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(job(session, start + offset))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            pending = list(running)
            try:
                await asyncio.wait_for(asyncio.gather(*pending), DRAIN_TIMEOUT_S)
            except TimeoutError:
                phase.errors["jobs cancelled at the drain limit"] += sum(1 for t in pending if t.cancelled())
        phase.give_up()


async def warm_up(url: str, clients: int, seconds: float) -> None:
    """Open every worker thread's database connection before anything is measured."""
    phase = Phase("warm-up", seconds)
    target = f"{url}/api/bench/trivial"

    async def step(session: aiohttp.ClientSession, _: int) -> bool:
        await trivial_request(session, target, phase, time.perf_counter())
        return True

    await closed_loop(phase, clients, step)


async def run_phases(args: argparse.Namespace, server: Gunicorn, accounts: list[tuple[int, str]]) -> list[Phase]:
    url = server.url
    rng = random.Random(args.seed)
    annotators = [Annotator(user_id=u, token=t, url=url, rng=random.Random(rng.random())) for u, t in accounts]
    trivial_url = f"{url}/api/bench/trivial"
    await warm_up(url, args.annotators, 2.0)

    pid = server.process.pid
    peer_closed = Phase("peer: trivial view, closed loop", args.seconds)

    async def trivial_step(session: aiohttp.ClientSession, _: int) -> bool:
        await trivial_request(session, trivial_url, peer_closed, time.perf_counter())
        return True

    with cpu_meter(peer_closed, pid):
        await closed_loop(peer_closed, args.annotators, trivial_step)

    duet_closed = Phase("Duet: next + judge, closed loop", args.seconds)

    async def annotate_step(session: aiohttp.ClientSession, client: int) -> bool:
        return await annotators[client].turn(session, duet_closed)

    with cpu_meter(duet_closed, pid):
        await closed_loop(duet_closed, args.annotators, annotate_step)

    peer_open = Phase("peer: trivial view, open loop", args.seconds)

    async def trivial_job(session: aiohttp.ClientSession, scheduled: float) -> None:
        await trivial_request(session, trivial_url, peer_open, scheduled)

    # Each judgement is two requests, so the peer gets the same request rate.
    with cpu_meter(peer_open, pid):
        await open_loop(peer_open, 2 * args.rate, rng, 4 * args.annotators, trivial_job)

    duet_open = Phase("Duet: next + judge, open loop", args.seconds)
    idle: asyncio.Queue[Annotator] = asyncio.Queue()
    for annotator in annotators:
        idle.put_nowait(annotator)

    async def annotate_job(session: aiohttp.ClientSession, scheduled: float) -> None:
        # An annotator does one card at a time; waiting for a free one counts in the latency.
        annotator = await idle.get()
        try:
            if not await annotator.turn(session, duet_open, scheduled):
                duet_open.errors["nothing left to judge (seed more comparisons)"] += 1
        finally:
            idle.put_nowait(annotator)

    with cpu_meter(duet_open, pid):
        await open_loop(duet_open, args.rate, rng, args.annotators, annotate_job)
    return [peer_closed, duet_closed, peer_open, duet_open]


# Report -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def latency_line(phase: Phase, endpoint: str, peer: Phase | None = None) -> str:
    p50, p99 = phase.p(endpoint, 0.50), phase.p(endpoint, 0.99)
    line = f"    {endpoint:<14} n={len(phase.latencies.get(endpoint, [])):>6}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
    if peer is not None:
        line += f"   (p99 {p99 / peer.p('trivial', 0.99):.2f}x the peer's)"
    return line


def phase_lines(phase: Phase) -> list[str]:
    lines = [f"  {phase.name}, {phase.seconds:g} s"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(phase.statuses.items()))
    lines.append(f"    responses: {statuses or 'none'}")
    if phase.errors:
        lines.append("    client errors: " + ", ".join(f"{k}: {v}" for k, v in sorted(phase.errors.items())))
    if phase.cpu is not None:
        cpu, cores = phase.cpu, os.cpu_count() or 1
        share = {
            "gunicorn": cpu.server,
            "postgres": cpu.postgres,
            "load generator": cpu.client,
            "everything else": max(0.0, cpu.machine - cpu.server - cpu.postgres - cpu.client),
        }
        used = ", ".join(f"{name} {100 * v / (cpu.wall * cores):.0f}%" for name, v in share.items())
        lines.append(f"    CPU of the {cores} cores: {100 * cpu.machine / (cpu.wall * cores):.0f}% busy: {used}")
        done = phase.statuses["judge 201"] or phase.statuses["trivial 200"]
        if done:
            unit = "judgement" if phase.statuses["judge 201"] else "request"
            lines.append(
                f"    CPU per {unit}: gunicorn {1000 * cpu.server / done:.2f} ms, "
                f"postgres {1000 * cpu.postgres / done:.2f} ms, load generator {1000 * cpu.client / done:.2f} ms"
            )
    return lines


def report(args: argparse.Namespace, phases: list[Phase], checks: list[Check], unacknowledged: int, setup: str) -> bool:
    peer_closed, duet_closed, peer_open, duet_open = phases
    out: list[str] = [setup, ""]

    out.append(f"Closed loop: {args.annotators} clients, no think time")
    out += phase_lines(peer_closed)
    peer_rps = peer_closed.rate("trivial", 200)
    out.append(f"    throughput     {peer_rps:7.1f} requests/s")
    out.append(latency_line(peer_closed, "trivial"))
    out += phase_lines(duet_closed)
    duet_rps = duet_closed.rate("next", 200) + duet_closed.rate("judge", 201)
    judgements = duet_closed.rate("judge", 201)
    out.append(
        f"    throughput     {judgements:7.1f} judgements/s, {duet_rps:.1f} requests/s "
        f"({duet_rps / peer_rps:.2f}x the peer's requests/s)"
    )
    out.append(latency_line(duet_closed, "next", peer_closed))
    out.append(latency_line(duet_closed, "judge", peer_closed))
    closed_p99 = max(duet_closed.p("next", 0.99), duet_closed.p("judge", 0.99))
    closed_ok = judgements >= TARGET_CLOSED_JUDGEMENTS_PER_S and closed_p99 < TARGET_CLOSED_P99_MS
    out.append(
        f"  target (a): >= {TARGET_CLOSED_JUDGEMENTS_PER_S:.0f} judgements/s with p99 of next and judge "
        f"< {TARGET_CLOSED_P99_MS:.0f} ms: {judgements:.1f}/s, p99 {closed_p99:.1f} ms -> {verdict(closed_ok)}"
    )
    # The same target relative to the peer, which the machine's drift cancels out of.
    want_ratio = TARGET_CLOSED_JUDGEMENTS_PER_S / REFERENCE_PEER_RPS
    want_p99 = TARGET_CLOSED_P99_MS / REFERENCE_PEER_P99_MS
    got_ratio = judgements / peer_rps
    got_p99 = closed_p99 / peer_closed.p("trivial", 0.99)
    out.append(
        f"  target (a) relative to the peer ({REFERENCE_PEER_RPS:.0f} requests/s, p99 {REFERENCE_PEER_P99_MS:.0f} ms "
        f"when it was set): >= {want_ratio:.3f} judgements per peer request and p99 <= {want_p99:.2f}x the peer's: "
        f"{got_ratio:.3f}, {got_p99:.2f}x -> {verdict(got_ratio >= want_ratio and got_p99 <= want_p99)} (informative)"
    )
    if duet_closed.cpu is not None and judgements:
        cpu = duet_closed.cpu
        spent = 1000 * (cpu.server + cpu.postgres + cpu.client) / duet_closed.statuses["judge 201"]
        budget = 1000 * (os.cpu_count() or 1) / TARGET_CLOSED_JUDGEMENTS_PER_S
        out.append(
            f"  CPU budget: {TARGET_CLOSED_JUDGEMENTS_PER_S:.0f} judgements/s on {os.cpu_count()} cores allows at most "
            f"{budget:.1f} ms of CPU per judgement with the whole machine; this run spent {spent:.1f} ms "
            "(gunicorn + postgres + load generator)"
        )
    out.append("")

    out.append(f"Open loop: Poisson arrivals, latency from the scheduled time; {args.annotators} annotators")
    out += phase_lines(peer_open)
    out.append(f"    offered        {2 * args.rate:7.1f} requests/s, served {peer_open.rate('trivial', 200):.1f}/s")
    out.append(latency_line(peer_open, "trivial"))
    out += phase_lines(duet_open)
    served = duet_open.rate("judge", 201)
    out.append(f"    offered        {args.rate:7.1f} judgements/s, served {served:.1f}/s")
    out.append(latency_line(duet_open, "next", peer_open))
    out.append(latency_line(duet_open, "judge", peer_open))
    out.append(latency_line(duet_open, "card and vote"))
    open_p99 = max(duet_open.p("next", 0.99), duet_open.p("judge", 0.99))
    open_ok = open_p99 < TARGET_OPEN_P99_MS and served >= 0.95 * args.rate
    rate_note = (
        "" if args.rate == TARGET_OPEN_RATE else f" (run at {args.rate:g}/s, the target names {TARGET_OPEN_RATE:g}/s)"
    )
    out.append(
        f"  target (b): at {TARGET_OPEN_RATE:.0f} judgements/s, p99 of next and judge < {TARGET_OPEN_P99_MS:.0f} ms"
        f" with >= 95% of the offered rate served{rate_note}: p99 {open_p99:.1f} ms, served {served:.1f}/s"
        f" -> {verdict(open_ok)}"
    )
    out.append("")

    accepted = sum(len(p.accepted) for p in phases)
    out.append(f"Invariants (SQL after the server stopped; {accepted} judgements acknowledged with 201)")
    for check in checks:
        out.append(f"    {check.name:<66} {check.violations:>5}  {verdict(check.ok)}")
    if unacknowledged:
        out.append(f"    recorded once though the client gave up waiting (not violations): {unacknowledged}")
    invariants_ok = all(c.ok for c in checks)
    out.append(f"  target: zero invariant violations -> {verdict(invariants_ok)}")
    out.append("")
    all_ok = closed_ok and open_ok and invariants_ok
    out.append(f"Overall: {verdict(all_ok)}")
    print("\n".join(out), flush=True)
    return all_ok


# Main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "N annotators against Duet's JSON API on gunicorn + PostgreSQL (database duet_bench on 127.0.0.1), "
            "compared with a trivial view on the same server; then checks the vote invariants with SQL."
        )
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
    parser.add_argument("--seed", type=int, default=0, help="random seed of choices and arrivals")
    parser.add_argument("--keep-db", action="store_true", help=f"keep the {DATABASE} database afterwards")
    args = parser.parse_args(argv)
    if min(args.annotators, args.k, args.workers, args.threads) < 1 or args.seconds <= 0 or args.rate <= 0:
        parser.error("--annotators, --k, --workers, --threads, --seconds and --rate must be positive")
    if args.k > args.annotators or args.history < 0:
        parser.error("--k may not exceed --annotators (nobody judges twice), and --history may not be negative")
    if not args.comparisons:
        # Far more than 2 cores can judge (well under 1,000 judgements/s), so nobody runs dry.
        args.comparisons = math.ceil((1000 + args.rate) * args.seconds / args.k) + 1000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["DATABASE_CONN_MAX_AGE"] = "0"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()

    try:
        began = time.perf_counter()
        database_prepare()
        seeded = seed(annotators=args.annotators, comparisons=args.comparisons, history=args.history, k=args.k)
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
    setup = (
        f"Duet annotator API load benchmark: gunicorn gthread {args.workers} workers x {args.threads} threads, "
        f"PostgreSQL {DATABASE} (persistent connections), {os.cpu_count()} CPUs shared with the load generator\n"
        f"{args.annotators} annotators, k={args.k}, {args.comparisons} open comparisons and {args.history} judged "
        f"{args.k} times before the run, seeded in {seeding:.1f} s, "
        f"{args.seconds:g} s per phase; server log: {log}"
    )
    return 0 if report(args, phases, checks, unacknowledged, setup) else 1


if __name__ == "__main__":
    sys.exit(main())
