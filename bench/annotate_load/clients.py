"""The load generator: annotators and trivial requests, in closed and open loops, phase by phase."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp

from bench.annotate_load.database import CHOICES
from bench.annotate_load.measure import Phase, cpu_meter
from bench.annotate_load.server import Gunicorn

REQUEST_TIMEOUT_S = 30.0
# A client stops only between requests, so a phase may overrun by a request or two; a stuck
# server may not hold the script longer than this past the phase.
DRAIN_TIMEOUT_S = REQUEST_TIMEOUT_S + 10.0
# After a failed request a closed-loop client pauses, so a dead server is not hammered in a busy loop.
ERROR_PAUSE_S = 0.05
# Idle connections are kept this long, shorter than the server's keep-alive (see server.KEEP_ALIVE_S).
CLIENT_KEEPALIVE_S = 10
# Long enough for every worker thread to serve a request, so each opens its database connection.
WARM_UP_S = 2.0
# The peer's open loop sends twice the requests and waits for no annotator: a larger pool keeps
# the client from queueing them, which would count as server latency.
PEER_CONNECTIONS_PER_ANNOTATOR = 4
NOTHING_LEFT = "nothing left to judge (seed more comparisons)"

TIMEOUT = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)


def connector(limit: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=limit, keepalive_timeout=CLIENT_KEEPALIVE_S, force_close=False)


class Annotator:
    """One annotator's client: ``next`` then ``judge`` with a random choice."""

    def __init__(self, *, user_id: int, token: str, url: str, rng: random.Random, campaign: str = "") -> None:
        self.user_id = user_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.next_url = f"{url}/api/v1/comparisons/next" + (f"?campaign={campaign}" if campaign else "")
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
        await self._judge(session, phase, json.loads(body), fetched, scheduled)
        return True

    async def _judge(
        self, session: aiohttp.ClientSession, phase: Phase, card: dict, fetched: float, scheduled: float | None
    ) -> None:
        """Vote on ``card``; a vote whose answer never comes is kept as unanswered, not lost."""
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
            return
        phase.in_flight.discard(vote)
        judged = time.perf_counter()
        phase.record("judge", status, judged - fetched, judged)
        if scheduled is not None:
            phase.latencies["card and vote"].append(judged - scheduled)
        if status == 201:
            phase.accepted.append((json.loads(body)["id"], card["id"], self.user_id))


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
                    phase.errors[NOTHING_LEFT] += 1
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
    """Warm up, then the four phases in order: peer and Duet closed loop, peer and Duet open loop."""
    rng = random.Random(args.seed)
    annotators = [
        Annotator(user_id=u, token=t, url=server.url, rng=random.Random(rng.random()), campaign=args.campaign)
        for u, t in accounts
    ]
    await warm_up(server.url, args.annotators, WARM_UP_S)
    closed = await _closed_phases(args, server, annotators)
    return [*closed, *await _open_phases(args, server, annotators, rng)]


async def _closed_phases(args: argparse.Namespace, server: Gunicorn, annotators: list[Annotator]) -> list[Phase]:
    trivial_url = f"{server.url}/api/bench/trivial"
    peer = Phase("peer: trivial view, closed loop", args.seconds)

    async def trivial_step(session: aiohttp.ClientSession, _: int) -> bool:
        await trivial_request(session, trivial_url, peer, time.perf_counter())
        return True

    with cpu_meter(peer, server.process.pid):
        await closed_loop(peer, args.annotators, trivial_step)

    duet = Phase("Duet: next + judge, closed loop", args.seconds)

    async def annotate_step(session: aiohttp.ClientSession, client: int) -> bool:
        return await annotators[client].turn(session, duet)

    with cpu_meter(duet, server.process.pid):
        await closed_loop(duet, args.annotators, annotate_step)
    return [peer, duet]


async def _open_phases(
    args: argparse.Namespace, server: Gunicorn, annotators: list[Annotator], rng: random.Random
) -> list[Phase]:
    trivial_url = f"{server.url}/api/bench/trivial"
    peer = Phase("peer: trivial view, open loop", args.seconds)

    async def trivial_job(session: aiohttp.ClientSession, scheduled: float) -> None:
        await trivial_request(session, trivial_url, peer, scheduled)

    # Each judgement is two requests, so the peer gets the same request rate.
    with cpu_meter(peer, server.process.pid):
        await open_loop(peer, 2 * args.rate, rng, PEER_CONNECTIONS_PER_ANNOTATOR * args.annotators, trivial_job)

    duet = Phase("Duet: next + judge, open loop", args.seconds)
    idle: asyncio.Queue[Annotator] = asyncio.Queue()
    for annotator in annotators:
        idle.put_nowait(annotator)

    async def annotate_job(session: aiohttp.ClientSession, scheduled: float) -> None:
        # An annotator does one card at a time; waiting for a free one counts in the latency.
        annotator = await idle.get()
        try:
            if not await annotator.turn(session, duet, scheduled):
                duet.errors[NOTHING_LEFT] += 1
        finally:
            idle.put_nowait(annotator)

    with cpu_meter(duet, server.process.pid):
        await open_loop(duet, args.rate, rng, args.annotators, annotate_job)
    return [peer, duet]
