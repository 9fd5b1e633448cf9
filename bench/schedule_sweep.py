"""How the small-data schedule was chosen: held-out reward accuracy of candidate schedules, cross-validated.

    .venv/bin/python -m bench.schedule_sweep --data pairs.jsonl [--folds 3] [--candidates "lr=5e-6,epochs=3" ...]

``--data`` is a preference file in TRL's ``prompt/chosen/rejected`` form (``manage.py export_preferences``, or a
run's frozen ``dataset.jsonl`` and ``heldout.jsonl`` concatenated). The pairs are split into ``--folds`` folds;
each candidate trains the default model (or ``--model``) on all folds but one and is scored on that one, so every
pair is held out once and a candidate's figure is its accuracy over all of them, not over a lucky handful.
The peer is the DPO paper's settings (RMSprop, lr 1e-6, batch 64, warm-up 150, one epoch), run the same way
on the same folds: each row prints its accuracy and margin beside the peer's. Every candidate starts from the
same seed; nothing else is tuned. Slow on a CPU: a candidate costs ``folds`` training runs.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAPER = "optimizer=rmsprop,lr=1e-6,batch_size=8,grad_accum=8,warmup_steps=150,epochs=1"
CANDIDATES = ("auto", "lr=1e-5,epochs=3", "lr=5e-6,epochs=5")


@dataclass
class Score:
    right: int = 0
    scored: int = 0
    margin_sum: float = 0.0
    steps: int = 0
    seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.right / self.scored if self.scored else float("nan")

    @property
    def margin(self) -> float:
        return self.margin_sum / self.scored if self.scored else float("nan")


def _overrides(text: str) -> dict[str, Any]:
    """``"lr=1e-5,epochs=3"`` as TrainConfig values; ``"auto"`` is the product's resolved schedule."""
    if text == "auto":
        return {}
    values: dict[str, Any] = {}
    for item in text.split(","):
        name, _, raw = item.partition("=")
        values[name.strip()] = raw if name.strip() == "optimizer" else json.loads(raw)
    return values


def _folds(rows: list[str], folds: int, seed: int) -> list[list[str]]:
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    return [shuffled[i::folds] for i in range(folds)]


def _run(rows: list[str], folds: int, model: str, candidate: str, seed: int, work: Path) -> Score:
    from dpo_engine import TrainConfig, train

    score = Score()
    split = _folds(rows, folds, seed)
    for index, heldout in enumerate(split):
        folder = Path(tempfile.mkdtemp(dir=work))
        train_rows = [row for other, fold in enumerate(split) if other != index for row in fold]
        (folder / "train.jsonl").write_text("".join(train_rows))
        (folder / "heldout.jsonl").write_text("".join(heldout))
        config = TrainConfig(
            data=str(folder / "train.jsonl"), eval_data=str(folder / "heldout.jsonl"), model=model,
            out=str(folder / "out"), seed=seed, save_every_minutes=0, **_overrides(candidate),
        )
        config.validate()
        started = time.monotonic()
        result = train(config)
        score.seconds += time.monotonic() - started
        score.steps += result.steps
        score.right += round(result.eval_after["eval/rewards/accuracies"] * len(heldout))
        score.scored += len(heldout)
        score.margin_sum += result.eval_after["eval/rewards/margins"] * len(heldout)
    return score


def main() -> None:
    from dpo_engine.config.training import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="TRL prompt/chosen/rejected JSONL")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id or path (default: the product's)")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds")
    parser.add_argument("--seed", type=int, default=0, help="the folds' shuffle and every run's seed")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), help="schedules to score")
    args = parser.parse_args()
    rows = [line if line.endswith("\n") else line + "\n" for line in Path(args.data).read_text().splitlines() if line]
    print(f"{len(rows)} pairs from {args.data}, {args.folds} folds, model {args.model}")
    with tempfile.TemporaryDirectory(prefix="duet-sweep-") as tmp:
        peer = _run(rows, args.folds, args.model, PAPER, args.seed, Path(tmp))
        print(f"peer (the DPO paper's settings) {PAPER}: accuracy {peer.accuracy:.3f} "
              f"({peer.right}/{peer.scored}), margin {peer.margin:.4f}, {peer.steps} steps, {peer.seconds:.0f} s")
        for candidate in args.candidates:
            s = _run(rows, args.folds, args.model, candidate, args.seed, Path(tmp))
            print(f"{candidate}: accuracy {s.accuracy:.3f} ({s.right}/{s.scored}; peer {peer.accuracy:.3f}, "
                  f"{s.accuracy - peer.accuracy:+.3f}), margin {s.margin:.4f} (peer {peer.margin:.4f}), "
                  f"{s.steps} steps, {s.seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
