"""How the commands print win rates: records with Wilson intervals, length-controlled rates, the leaderboard."""

from __future__ import annotations

from training.leaderboard import Leaderboard
from training.oracles import EvalResult
from training.win_rates import LengthControlled, Record


def _percent(value: float | None) -> str:
    return f"{100 * value:.0f}%" if value is not None else "n/a"


def record_summary(record: Record) -> str:
    """``3-1, 2 ties, win rate 75% [30%-95%]``: wins-losses, ties, and the decisive win rate with its interval."""
    interval = record.win_rate_ci
    shown = f" [{_percent(interval[0])}-{_percent(interval[1])}]" if interval is not None else ""
    return f"{record.wins}-{record.losses}, {record.ties} ties, win rate {_percent(record.win_rate)}{shown}"


def length_controlled_summary(value: LengthControlled | None) -> str:
    if value is None:
        return "n/a (too few decisive verdicts, or one side the shorter in all of them)"
    return f"{_percent(value.win_rate)} [{_percent(value.ci_low)}-{_percent(value.ci_high)}]"


def held_out_summary(result: EvalResult) -> str:
    """One line: the record, the plain and length-controlled win rates with intervals, and the mean lengths."""
    record = Record(wins=result.wins, losses=result.losses, ties=result.ties)
    return (
        f"{result.candidate} vs {result.baseline} on {result.prompts} prompts: {record_summary(record)}; "
        f"length-controlled {length_controlled_summary(result.length_controlled)}; "
        f"mean length {result.candidate_mean_chars:.0f} vs {result.baseline_mean_chars:.0f} chars"
    )


def leaderboard_report(board: Leaderboard) -> str:
    """The leaderboard as text: ratings, mean lengths, the training-round record and each evaluation judge's."""
    lines = [
        f"leaderboard ({board.judgements} judgements between versions, {board.evaluation_judgements} of them "
        f"from evaluation rounds; {board.ties_note}):"
    ]
    for row in board.standings:
        length = f"; mean length {row.mean_chars:.0f} chars" if row.mean_chars is not None else ""
        if row.rating is None:
            lines.append(f"  -  {row.name}: not rated{length}")
            continue
        parent = ""
        if row.vs_parent is not None and row.vs_parent.judgements:
            parent = f"; training rounds vs {row.parent_name}: {record_summary(row.vs_parent)}"
        lines.append(
            f"  {row.rank}. {row.name}: {row.rating:.0f} [{row.ci_low:.0f}, {row.ci_high:.0f}]{length}{parent}"
        )
        lines.extend(
            f"       evaluation vs {row.parent_name}, {head.judge}: {record_summary(head.record)}; "
            f"length-controlled {length_controlled_summary(head.length_controlled)}; "
            f"mean length {head.mean_chars:.0f} vs {head.parent_mean_chars:.0f} chars"
            for head in row.evaluations
        )
    return "\n".join(lines)
