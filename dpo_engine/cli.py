"""``python -m dpo_engine``: ``train`` (DPO, options generated from TrainConfig) and ``generate``.

Examples::

    python -m dpo_engine train --data pairs.jsonl --out runs/a --epochs 2 --eval-data heldout.jsonl
    torchrun --nproc-per-node 2 -m dpo_engine train --data pairs.jsonl --out runs/a
    python -m dpo_engine generate --help

Bad input (unknown model, unreadable data, inconsistent options) ends with one ``error:`` line and
exit code 2. Ctrl-C once stops training cleanly after the current step and writes a checkpoint for
``--resume``; a second Ctrl-C aborts.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType


def build_parser() -> argparse.ArgumentParser:
    from dpo_engine import generate
    from dpo_engine.config import add_config_arguments

    parser = argparse.ArgumentParser(prog="python -m dpo_engine", description="Duet's DPO engine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,generate}")
    train_parser = commands.add_parser(
        "train", help="train a model with DPO on preference pairs",
        description="Train with DPO; writes OUT/metrics.jsonl, OUT/checkpoints/ and OUT/final/.",
    )
    add_config_arguments(train_parser)
    generate_parser = commands.add_parser("generate", help="generate completions in batches")
    generate.add_cli_arguments(generate_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "generate":
        from dpo_engine import generate

        return generate.run_cli(args)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    from dpo_engine.config import config_from_args
    from dpo_engine.data import DataError
    from dpo_engine.models import ModelNotFoundError
    from dpo_engine.trainer import TrainCallbacks, train

    try:
        config = config_from_args(args)
    except ValueError as exc:
        return _error(str(exc))
    interrupted = {"count": 0}

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        interrupted["count"] += 1
        if interrupted["count"] > 1:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = train(config, callbacks=TrainCallbacks(should_stop=lambda: interrupted["count"] > 0))
    except (ModelNotFoundError, DataError) as exc:
        return _error(str(exc))
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.stopped:
        print(f"stopped at step {result.steps}; continue with --resume --out {result.out_dir}")
        return 130
    print(f"done: {result.steps} steps; model in {result.final_model_dir}; metrics in "
          f"{result.out_dir / 'metrics.jsonl'}")
    return 0


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
