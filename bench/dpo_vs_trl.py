"""DPO throughput and memory: Duet's engine against TRL's ``DPOTrainer``, same model, data and settings.

    .venv/bin/python bench/dpo_vs_trl.py                    # SmolLM2-135M, 64 pairs, batch 8, 1 epoch
    .venv/bin/python bench/dpo_vs_trl.py --pairs 32 --batch-size 4 --model path/or/id

Each trainer runs in its own child process (so peak RSS / CUDA memory belong to it alone) on the
same synthetic conversational pairs, with the same batch size, max length, loss (sigmoid), beta,
learning rate and optimiser family (AdamW, TRL's default). TRL keeps its own defaults otherwise
(gradient checkpointing on, a frozen reference copy, padded batches). The engine runs as set by
the ``--engine-*`` flags, by default as ``TrainConfig`` does: no gradient checkpointing, reference
log-probs scored once before step 1 with the policy's own weights (no second copy in memory),
rows of 512 tokens packed longest-first (the prompt encoded once for both completions), fused
chunked log-probs. Throughput is measured from the end of step 1 to the end of the last step, identically
for both (step 1 pays one-off warm-up costs), plus, for the engine, the whole reference scoring
pass; tokens are the tokens of both full sequences (prompt + chosen, prompt + rejected), as TRL
counts them.

The first step's ``logps/chosen`` / ``logps/rejected`` (before any update) must agree: that checks
both score the same tokens. On CUDA both use bf16 autocast and the script also prints MFU.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOPICS = [
    "rivers",
    "volcanoes",
    "bread",
    "chess",
    "bicycles",
    "tides",
    "honeybees",
    "glass",
    "comets",
    "maps",
    "violins",
    "deserts",
    "coffee",
    "lighthouses",
    "origami",
    "glaciers",
]
ASKS = [
    "Explain how {t} work in a few sentences.",
    "Give me three facts about {t}.",
    "Write a short paragraph about the history of {t}.",
    "What should a beginner know about {t}?",
]
FILLER = [
    "it",
    "depends",
    "on",
    "many",
    "small",
    "details",
    "that",
    "interact",
    "over",
    "time",
    "and",
    "the",
    "simplest",
    "way",
    "to",
    "see",
    "this",
    "is",
    "to",
    "look",
    "closely",
    "at",
    "one",
    "example",
    "and",
    "then",
    "compare",
    "it",
    "with",
    "another",
    "one",
    "from",
    "a",
    "different",
    "place",
]
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
# TrainConfig's default seed: the engine shuffles with it, and TRL gets it too so both runs start alike.
SEED = 42
# Padded (TRL) and packed (engine) batches round differently, bf16 more so; a wrongly scored token moves
# a sequence's log-prob far more than 1%.
LOGPS_RTOL = 1e-2
# Enough of a failed child's stderr to show its traceback, not its whole log.
FAILURE_TAIL_CHARS = 4000


def synthetic_pairs(n: int, seed: int = 0) -> list[dict]:
    """Conversational pairs with prompt and answers of varied length (30-90 words)."""
    rng = random.Random(seed)

    def answer(topic: str) -> str:
        words = [rng.choice(FILLER) for _ in range(rng.randint(30, 90))]
        return f"About {topic}: " + " ".join(words) + "."

    pairs = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        prompt = rng.choice(ASKS).format(t=topic)
        pairs.append(
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": answer(topic)}],
                "rejected": [{"role": "assistant", "content": answer(topic)}],
            }
        )
    return pairs


def peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_engine(args: argparse.Namespace, data: Path, model_path: str, out: Path) -> dict:
    from dpo_engine import TrainCallbacks, TrainConfig, train

    stamps: list[float] = []
    first: dict = {}

    def on_metrics(metrics: dict) -> None:
        if metrics.get("split") == "eval":
            return
        stamps.append(time.perf_counter())
        if not first:
            first.update(metrics)

    config = TrainConfig(
        data=str(data),
        model=model_path,
        out=str(out),
        loss=["sigmoid"],
        beta=0.1,
        optimizer="adamw",
        lr=1e-6,
        warmup_steps=0,
        epochs=1,
        batch_size=args.batch_size,
        grad_accum=1,
        max_length=args.max_length,
        max_prompt_length=None,
        reference=args.engine_reference,
        gradient_checkpointing=args.engine_checkpointing,
        log_every=10**9,
        pack_tokens=args.engine_pack_tokens,
        # TRL writes no checkpoint in its timed window either.
        save_every_minutes=0,
    )
    precompute: list[float] = []

    def on_log(line: str) -> None:
        if found := re.match(r"precomputed reference log-probs in ([0-9.]+)s", line):
            precompute.append(float(found.group(1)))

    started = time.perf_counter()
    train(config, callbacks=TrainCallbacks(on_metrics=on_metrics, on_log=on_log))
    # Scoring the reference before step 1 is work TRL does inside its steps: it counts in the timed window.
    return {"stamps": stamps, "first": first, "total_s": time.perf_counter() - started, "extra_s": sum(precompute)}


def run_trl(args: argparse.Namespace, data: Path, model_path: str, out: Path, device: str) -> dict:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, *a: object, **k: object) -> None:
            stamps.append(time.perf_counter())

    records = [json.loads(line) for line in data.read_text().splitlines()]
    config = DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_length=args.max_length,
        loss_type=["sigmoid"],
        beta=0.1,
        learning_rate=1e-6,
        num_train_epochs=1,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        seed=SEED,
        disable_tqdm=True,
        train_sampling_strategy="sequential",
    )
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_path)
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(records),
        processing_class=AutoTokenizer.from_pretrained(model_path),
        callbacks=[Stamp()],
    )
    trainer.train()
    first = next(row for row in trainer.state.log_history if "logps/chosen" in row)
    return {"stamps": stamps, "first": first, "total_s": time.perf_counter() - started}


def child(args: argparse.Namespace) -> None:
    """Run one trainer and print a JSON line with its numbers."""
    import torch

    from dpo_engine.data import load_pairs
    from dpo_engine.models import load_tokenizer, resolve_model_path

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_path = resolve_model_path(args.model)
    data = Path(args.data)
    pairs, _ = load_pairs(data, load_tokenizer(model_path), max_length=args.max_length)
    tokens_per_pair = sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs) / len(pairs)
    with tempfile.TemporaryDirectory() as tmp:
        if args.child == "engine":
            result = run_engine(args, data, model_path, Path(tmp))
        else:
            result = run_trl(args, data, model_path, Path(tmp), device)
    stamps = result["stamps"]
    timed_steps = len(stamps) - 1
    seconds = stamps[-1] - stamps[0] + result.get("extra_s", 0.0)
    pairs_per_s = timed_steps * args.batch_size / seconds
    n_params = sum(
        p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(model_path).parameters()
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "device": device,
                "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
                "steps": len(stamps),
                "pairs_per_s": pairs_per_s,
                "tokens_per_s": pairs_per_s * tokens_per_pair,
                "peak_mb": peak_memory_mb(device),
                "total_s": result["total_s"],
                "n_params": n_params,
                "logps_chosen": result["first"]["logps/chosen"],
                "logps_rejected": result["first"]["logps/rejected"],
            }
        )
    )


def mfu(result: dict) -> str:
    """Model FLOPs utilisation: 6N per token for the policy (fwd+bwd) + 2N for the reference forward."""
    if result["device"] != "cuda":
        return "n/a (CPU)"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in (result["gpu"] or "")), None)
    if peak is None:
        return f"n/a (unknown peak for {result['gpu']})"
    return f"{8 * result['n_params'] * result['tokens_per_s'] / (peak * 1e12):.1%}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument(
        "--engine-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="gradient checkpointing in the engine too (TRL's default is on; it costs the engine time, saves memory)",
    )
    parser.add_argument(
        "--engine-reference",
        choices=["frozen", "precomputed"],
        default="precomputed",
        help="the engine's reference log-probs: a frozen copy (TRL's default), or scored once before step 1 "
        "(the time counts in the engine's throughput)",
    )
    parser.add_argument(
        "--engine-pack-tokens",
        type=int,
        default=512,
        help="the engine's packed-row budget (512: one pair a row, so attention stays within a pair)",
    )
    parser.add_argument("--child", choices=["engine", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser.parse_args()


def write_pairs(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """The synthetic pairs as JSONL, for each trainer: TRL's file in the order the engine visits them."""
    from dpo_engine.schedule import epoch_order

    records = synthetic_pairs(args.pairs)
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    # TRL reads the pairs in the order the engine's seeded shuffle (SEED) visits them (sequential sampler), so both
    # score the same first batch and their step-1 log-probs can be compared.
    trl_data = folder / "pairs-engine-order.jsonl"
    trl_data.write_text("".join(json.dumps(records[i]) + "\n" for i in epoch_order(len(records), SEED, 0)))
    return {"trl": trl_data, "engine": data}


def child_run(args: argparse.Namespace, name: str, data: Path) -> dict:
    """Run one trainer in a child process of this script and return its RESULT line's numbers."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--data",
        str(data),
        "--model",
        args.model,
        "--pairs",
        str(args.pairs),
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
    ]
    cmd.append("--engine-checkpointing" if args.engine_checkpointing else "--no-engine-checkpointing")
    cmd += ["--engine-reference", args.engine_reference, "--engine-pack-tokens", str(args.engine_pack_tokens)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1"))
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        sys.exit(f"{name} failed:\n{done.stderr[-FAILURE_TAIL_CHARS:]}")
    return json.loads(line.removeprefix("RESULT "))


def report(args: argparse.Namespace, trl: dict, eng: dict) -> None:
    """The settings, one row per trainer, the engine/TRL ratios and whether step 1 scored alike."""
    print(
        f"device: {eng['device']}{' ' + eng['gpu'] if eng['gpu'] else ''}; model {args.model} "
        f"({eng['n_params'] / 1e6:.0f}M params, full fine-tune); {args.pairs} pairs, batch {args.batch_size}, "
        f"max length {args.max_length}, sigmoid loss, AdamW; engine: reference {args.engine_reference}, "
        f"pack tokens {args.engine_pack_tokens}, gradient checkpointing {'on' if args.engine_checkpointing else 'off'}"
    )
    print(
        f"{'':8}{'pairs/s':>10}{'tokens/s':>11}{'peak MB':>10}{'wall s':>9}{'MFU':>12}"
        f"{'logps/chosen@1':>17}{'logps/rejected@1':>18}"
    )
    for name, r in (("TRL", trl), ("engine", eng)):
        print(
            f"{name:8}{r['pairs_per_s']:>10.2f}{r['tokens_per_s']:>11.0f}{r['peak_mb']:>10.0f}{r['total_s']:>9.1f}"
            f"{mfu(r):>12}{r['logps_chosen']:>17.3f}{r['logps_rejected']:>18.3f}"
        )
    print(
        f"throughput ratio engine/TRL: {eng['pairs_per_s'] / trl['pairs_per_s']:.2f}x; "
        f"peak memory ratio engine/TRL: {eng['peak_mb'] / trl['peak_mb']:.2f}x"
    )
    agree = all(abs(eng[k] - trl[k]) <= LOGPS_RTOL * max(1.0, abs(trl[k])) for k in ("logps_chosen", "logps_rejected"))
    print(f"first-step log-probs agree: {'yes' if agree else 'NO'}")


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return

    from dpo_engine.models import resolve_model_path

    resolve_model_path(args.model)  # convert the default GGUF once, outside the timed children
    with tempfile.TemporaryDirectory() as tmp:
        files = write_pairs(args, Path(tmp))
        results = {name: child_run(args, name, files[name]) for name in ("trl", "engine")}
    report(args, results["trl"], results["engine"])


if __name__ == "__main__":
    main()
