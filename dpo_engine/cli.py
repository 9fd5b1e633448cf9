"""``python -m dpo_engine``: ``train`` (DPO, options from TrainConfig) and ``generate`` (options from GenerateConfig).

Examples::

    python -m dpo_engine train --data pairs.jsonl --out runs/a --epochs 2 --eval-data heldout.jsonl
    torchrun --nproc-per-node 2 -m dpo_engine train --data pairs.jsonl --out runs/a
    python -m dpo_engine generate --prompts prompts.jsonl --out completions.jsonl -n 2

Bad input (unknown model, unreadable data, inconsistent options) ends with one ``error:`` line and
exit code 2. Ctrl-C once (or SIGTERM, however often: ``torchrun`` forwards the one it gets) stops training
cleanly after the current step and writes a checkpoint for ``--resume``; a second Ctrl-C aborts.
``--events PATH`` makes rank 0 append the run's progress, metrics, log and result to PATH as JSON lines
(``dpo_engine.events``), for a caller that launched the run as another process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dpo_engine.events import EventWriter

# argparse's own exit status for bad options, so every kind of bad input ends the same way.
EXIT_BAD_INPUT = 2
# 128 + SIGINT: what a shell reports for a program stopped by Ctrl-C.
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from dpo_engine.config import GenerateConfig, TrainConfig, add_config_arguments

    parser = argparse.ArgumentParser(prog="python -m dpo_engine", description="Duet's DPO engine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,generate}")
    train_parser = commands.add_parser(
        "train", help="train a model with DPO on preference pairs",
        description="Train with DPO; writes OUT/metrics.jsonl, OUT/checkpoints/ and OUT/final/.",
    )
    add_config_arguments(train_parser, TrainConfig)
    train_parser.add_argument(
        "--events", default=None, metavar="PATH",
        help="append the run's schedule, metrics, progress, log and result to PATH as JSON lines (rank 0 only)",
    )
    generate_parser = commands.add_parser(
        "generate", help="generate completions in batches",
        description="Sample completions of every prompt; writes OUT as JSONL, one line per completion.",
    )
    add_config_arguments(generate_parser, GenerateConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    from dpo_engine.config import TrainConfig, config_from_args
    from dpo_engine.data import DataError
    from dpo_engine.events import EventWriter
    from dpo_engine.models import ModelNotFoundError
    from dpo_engine.trainer import TrainCallbacks, train

    # Under a launcher every process parses the same options; rank 0 alone reports.
    events = EventWriter(args.events) if args.events and os.environ.get("RANK", "0") == "0" else None
    try:
        config = config_from_args(args, TrainConfig)
    except ValueError as exc:
        return _error(str(exc), events)
    interrupted = {"count": 0, "terminated": False}

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        interrupted["count"] += 1
        if interrupted["count"] > 1:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        # A SIGTERM asks for a clean stop; SIGKILL is how a caller insists.
        if not interrupted["terminated"]:
            print("\nSIGTERM: stopping after this step", file=sys.stderr)
        interrupted["terminated"] = True

    callbacks = TrainCallbacks(should_stop=lambda: interrupted["count"] > 0 or bool(interrupted["terminated"]))
    previous = signal.signal(signal.SIGINT, on_interrupt), signal.signal(signal.SIGTERM, on_terminate)
    try:
        result = train(config, callbacks=events.callbacks(callbacks) if events else callbacks)
    except (ModelNotFoundError, DataError) as exc:
        return _error(str(exc), events)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    if events:
        events.result(result)
    if result.stopped:
        print(f"stopped at step {result.steps}; continue with --resume --out {result.out_dir}")
        return EXIT_INTERRUPTED
    print(f"done: {result.steps} steps; model in {result.final_model_dir}; metrics in "
          f"{result.out_dir / 'metrics.jsonl'}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    """Generate for every prompt in ``--prompts`` and write ``--out`` atomically."""
    import torch

    from dpo_engine.config import GenerateConfig, config_from_args
    from dpo_engine.generate import generate, write_generations
    from dpo_engine.metrics import per_second
    from dpo_engine.models import load_model, load_tokenizer
    from dpo_engine.prompts import read_prompts

    try:
        config = config_from_args(args, GenerateConfig)
        records = read_prompts(config.prompts)
        dtype = None if config.dtype == "auto" else getattr(torch, config.dtype)
        model = load_model(config.model, device=config.device, dtype=dtype)
        tokenizer = load_tokenizer(config.model)
        start = time.perf_counter()
        results = generate(
            model, tokenizer, [r.prompt for r in records], n=config.n, temperature=config.temperature,
            top_p=config.top_p, max_new_tokens=config.max_new_tokens, seed=config.seed, batch_size=config.batch_size,
            progress=lambda done, total: print(f"\r{done}/{total} completions", end="", file=sys.stderr),
        )
        seconds = time.perf_counter() - start
        print(file=sys.stderr)  # ends the progress line
    except ValueError as exc:
        return _error(str(exc))
    out = Path(config.out)
    meta = {"model": config.model, "temperature": config.temperature, "top_p": config.top_p,
            "max_new_tokens": config.max_new_tokens, "seed": config.seed}
    write_generations(out, records, results, meta)
    tokens = sum(g.completion_tokens for gs in results for g in gs)
    print(
        f"wrote {sum(map(len, results))} completions of {len(records)} prompts to {out} "
        f"({tokens} tokens in {seconds:.1f} s, {per_second(tokens, seconds):.1f} tokens/s)"
    )
    return 0


def _error(message: str, events: EventWriter | None = None) -> int:
    print(f"error: {message}", file=sys.stderr)
    if events:
        events.error(message)
    return EXIT_BAD_INPUT
