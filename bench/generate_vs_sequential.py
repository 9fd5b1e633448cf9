"""Batched ``dpo_engine.generate`` against Hugging Face ``model.generate`` called one prompt at a time.

Same model (the default SmolLM2-135M-Instruct unless --model), same prompts, same greedy settings, same stop
tokens, in one process; prints tokens/s of each, the speed-up, and how many completions come out identical.

    .venv/bin/python -m bench.generate_vs_sequential            # 16 prompts, 64 new tokens
    .venv/bin/python -m bench.generate_vs_sequential --threads 1 --prompts 8
"""

from __future__ import annotations

import argparse
import time

import torch

from dpo_engine.generate import generate, prompt_ids, stop_token_ids
from dpo_engine.models import DEFAULT_MODEL, load_model, load_tokenizer

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences why the sky is blue.",
    "Give me three tips for learning a new language quickly and say which one matters most.",
    "hi",
    "What is 17 times 23?",
    "Translate 'good morning' into Spanish, German and Italian.",
    "Summarise the plot of Romeo and Juliet for a ten-year-old who has never heard of Shakespeare.",
    "Name a famous physicist.",
    "How do I reverse a list in Python?",
    "Describe the taste of coffee to someone who has never had it.",
    "What are the primary colours?",
    "Write a short motivational message for a student before an exam.",
    "List four planets of the solar system.",
    "Why do cats purr? Answer briefly, then give one fun fact about cats.",
    "What is DPO in machine learning?",
]


def sequential_hf(model, tokenizer, prompts, max_new_tokens: int, stops: list[int]) -> list[list[int]]:
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([prompt_ids(tokenizer, prompt)], device=model.device)
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
        )
        outputs.append(out[0, ids.shape[1] :].tolist())
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=16, help=f"how many prompts (at most {len(PROMPTS)})")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default=None, help="cpu, cuda... (default: cuda when available)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model, device=args.device)
    tokenizer = load_tokenizer(args.model)
    prompts = PROMPTS[: args.prompts]
    stops = sorted(stop_token_ids(tokenizer, model))
    generate(model, tokenizer, prompts[:2], temperature=0, max_new_tokens=4)  # warm-up both paths
    with torch.inference_mode():
        sequential_hf(model, tokenizer, prompts[:1], 4, stops)

    start = time.perf_counter()
    batched = generate(
        model, tokenizer, prompts, temperature=0, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
    )
    batched_s = time.perf_counter() - start
    batched_tokens = sum(g[0].completion_tokens for g in batched)

    start = time.perf_counter()
    with torch.inference_mode():
        sequential = sequential_hf(model, tokenizer, prompts, args.max_new_tokens, stops)
    sequential_s = time.perf_counter() - start
    sequential_tokens = sum(len(t) for t in sequential)

    same = sum(
        g[0].text == tokenizer.decode([t for t in s if t not in stops], skip_special_tokens=True)
        for g, s in zip(batched, sequential, strict=True)
    )
    print(
        f"model {args.model}, {len(prompts)} prompts, greedy, max_new_tokens={args.max_new_tokens}, "
        f"batch_size={args.batch_size}, torch threads={torch.get_num_threads()}, device {model.device}"
    )
    print(
        f"dpo_engine.generate (batched):   {batched_tokens:5d} tokens in {batched_s:6.1f} s = "
        f"{batched_tokens / batched_s:7.1f} tokens/s"
    )
    print(
        f"HF model.generate (one by one):  {sequential_tokens:5d} tokens in {sequential_s:6.1f} s = "
        f"{sequential_tokens / sequential_s:7.1f} tokens/s"
    )
    print(
        f"speed-up: {(batched_tokens / batched_s) / (sequential_tokens / sequential_s):.2f}x tokens/s; "
        f"identical completions: {same}/{len(prompts)}"
    )


if __name__ == "__main__":
    main()
