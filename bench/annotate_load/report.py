"""The printed report: each phase's figures, the targets with their verdicts, the invariants."""

from __future__ import annotations

import argparse
import os

from bench.annotate_load.invariants import Check
from bench.annotate_load.measure import CpuUse, Phase

TARGET_CLOSED_JUDGEMENTS_PER_S = 200.0
TARGET_CLOSED_P99_MS = 250.0
TARGET_OPEN_RATE = 100.0
TARGET_OPEN_P99_MS = 100.0
# Target (b) counts the open loop as keeping up when it serves this share of the offered rate.
TARGET_OPEN_SERVED_SHARE = 0.95
# The issue set target (a) where the trivial view served this at 50 clients on this machine.
REFERENCE_PEER_RPS = 1200.0
REFERENCE_PEER_P99_MS = 134.0


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
    return lines + _cpu_lines(phase)


def _cpu_lines(phase: Phase) -> list[str]:
    """Each party's share of the machine's cores, and its CPU per judgement (or request)."""
    if phase.cpu is None:
        return []
    cpu, cores = phase.cpu, os.cpu_count() or 1
    share = {
        "gunicorn": cpu.server,
        "postgres": cpu.postgres,
        "load generator": cpu.client,
        "everything else": max(0.0, cpu.machine - cpu.server - cpu.postgres - cpu.client),
    }
    used = ", ".join(f"{name} {100 * v / (cpu.wall * cores):.0f}%" for name, v in share.items())
    lines = [f"    CPU of the {cores} cores: {100 * cpu.machine / (cpu.wall * cores):.0f}% busy: {used}"]
    done = phase.statuses["judge 201"] or phase.statuses["trivial 200"]
    if done:
        unit = "judgement" if phase.statuses["judge 201"] else "request"
        lines.append(
            f"    CPU per {unit}: gunicorn {1000 * cpu.server / done:.2f} ms, "
            f"postgres {1000 * cpu.postgres / done:.2f} ms, load generator {1000 * cpu.client / done:.2f} ms"
        )
    return lines


def _closed_lines(args: argparse.Namespace, peer: Phase, duet: Phase) -> tuple[list[str], bool]:
    """The closed-loop phases and target (a), absolute and relative to the peer."""
    out = [f"Closed loop: {args.annotators} clients, no think time", *phase_lines(peer)]
    peer_rps = peer.rate("trivial", 200)
    out.append(f"    throughput     {peer_rps:7.1f} requests/s")
    out.append(latency_line(peer, "trivial"))
    out += phase_lines(duet)
    duet_rps = duet.rate("next", 200) + duet.rate("judge", 201)
    judgements = duet.rate("judge", 201)
    out.append(
        f"    throughput     {judgements:7.1f} judgements/s, {duet_rps:.1f} requests/s "
        f"({duet_rps / peer_rps:.2f}x the peer's requests/s)"
    )
    out.append(latency_line(duet, "next", peer))
    out.append(latency_line(duet, "judge", peer))
    closed_p99 = max(duet.p("next", 0.99), duet.p("judge", 0.99))
    closed_ok = judgements >= TARGET_CLOSED_JUDGEMENTS_PER_S and closed_p99 < TARGET_CLOSED_P99_MS
    out.append(
        f"  target (a): >= {TARGET_CLOSED_JUDGEMENTS_PER_S:.0f} judgements/s with p99 of next and judge "
        f"< {TARGET_CLOSED_P99_MS:.0f} ms: {judgements:.1f}/s, p99 {closed_p99:.1f} ms -> {verdict(closed_ok)}"
    )
    # The same target relative to the peer, which the machine's drift cancels out of.
    want_ratio = TARGET_CLOSED_JUDGEMENTS_PER_S / REFERENCE_PEER_RPS
    want_p99 = TARGET_CLOSED_P99_MS / REFERENCE_PEER_P99_MS
    got_ratio = judgements / peer_rps
    got_p99 = closed_p99 / peer.p("trivial", 0.99)
    out.append(
        f"  target (a) relative to the peer ({REFERENCE_PEER_RPS:.0f} requests/s, p99 {REFERENCE_PEER_P99_MS:.0f} ms "
        f"when it was set): >= {want_ratio:.3f} judgements per peer request and p99 <= {want_p99:.2f}x the peer's: "
        f"{got_ratio:.3f}, {got_p99:.2f}x -> {verdict(got_ratio >= want_ratio and got_p99 <= want_p99)} (informative)"
    )
    if duet.cpu is not None and judgements:
        out.append(_cpu_budget_line(duet.cpu, duet.statuses["judge 201"]))
    return out, closed_ok


def _cpu_budget_line(cpu: CpuUse, judged: int) -> str:
    """The CPU a judgement may cost for target (a) on this machine, against what ``judged`` cost."""
    spent = 1000 * (cpu.server + cpu.postgres + cpu.client) / judged
    budget = 1000 * (os.cpu_count() or 1) / TARGET_CLOSED_JUDGEMENTS_PER_S
    return (
        f"  CPU budget: {TARGET_CLOSED_JUDGEMENTS_PER_S:.0f} judgements/s on {os.cpu_count()} cores allows at most "
        f"{budget:.1f} ms of CPU per judgement with the whole machine; this run spent {spent:.1f} ms "
        "(gunicorn + postgres + load generator)"
    )


def _open_lines(args: argparse.Namespace, peer: Phase, duet: Phase) -> tuple[list[str], bool]:
    """The open-loop phases and target (b)."""
    out = [f"Open loop: Poisson arrivals, latency from the scheduled time; {args.annotators} annotators"]
    out += phase_lines(peer)
    out.append(f"    offered        {2 * args.rate:7.1f} requests/s, served {peer.rate('trivial', 200):.1f}/s")
    out.append(latency_line(peer, "trivial"))
    out += phase_lines(duet)
    served = duet.rate("judge", 201)
    out.append(f"    offered        {args.rate:7.1f} judgements/s, served {served:.1f}/s")
    out.append(latency_line(duet, "next", peer))
    out.append(latency_line(duet, "judge", peer))
    out.append(latency_line(duet, "card and vote"))
    open_p99 = max(duet.p("next", 0.99), duet.p("judge", 0.99))
    open_ok = open_p99 < TARGET_OPEN_P99_MS and served >= TARGET_OPEN_SERVED_SHARE * args.rate
    rate_note = (
        "" if args.rate == TARGET_OPEN_RATE else f" (run at {args.rate:g}/s, the target names {TARGET_OPEN_RATE:g}/s)"
    )
    out.append(
        f"  target (b): at {TARGET_OPEN_RATE:.0f} judgements/s, p99 of next and judge < {TARGET_OPEN_P99_MS:.0f} ms"
        f" with >= {TARGET_OPEN_SERVED_SHARE:.0%} of the offered rate served{rate_note}: p99 {open_p99:.1f} ms,"
        f" served {served:.1f}/s -> {verdict(open_ok)}"
    )
    return out, open_ok


def _invariant_lines(phases: list[Phase], checks: list[Check], unacknowledged: int) -> tuple[list[str], bool]:
    accepted = sum(len(p.accepted) for p in phases)
    out = [f"Invariants (SQL after the server stopped; {accepted} judgements acknowledged with 201)"]
    for check in checks:
        out.append(f"    {check.name:<66} {check.violations:>5}  {verdict(check.ok)}")
    if unacknowledged:
        out.append(f"    recorded once though the client gave up waiting (not violations): {unacknowledged}")
    invariants_ok = all(c.ok for c in checks)
    out.append(f"  target: zero invariant violations -> {verdict(invariants_ok)}")
    return out, invariants_ok


def report(args: argparse.Namespace, phases: list[Phase], checks: list[Check], unacknowledged: int, setup: str) -> bool:
    """Print the whole report; True when every target and invariant holds."""
    peer_closed, duet_closed, peer_open, duet_open = phases
    closed, closed_ok = _closed_lines(args, peer_closed, duet_closed)
    opened, open_ok = _open_lines(args, peer_open, duet_open)
    invariants, invariants_ok = _invariant_lines(phases, checks, unacknowledged)
    all_ok = closed_ok and open_ok and invariants_ok
    out = [setup, "", *closed, "", *opened, "", *invariants, "", f"Overall: {verdict(all_ok)}"]
    print("\n".join(out), flush=True)
    return all_ok
