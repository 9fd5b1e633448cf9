from __future__ import annotations

import json
import math

import pytest
import torch

from dpo_engine.cli import main
from dpo_engine.generate import Generation, generate, prompt_ids, stop_token_ids

# Different lengths on purpose: batching pads them on the left.
PROMPTS = [
    "hi",
    "Write a long poem about the sea, the wind, the harbour and the boats that never came back home.",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
    "What is the capital of France?",
    "Count to three.",
]


@pytest.fixture
def model(make_tiny_model):
    # float64 keeps batched and one-by-one logits equal to ~1e-15, so no argmax can flip between them
    return make_tiny_model(seed=1).double()


def test_batched_greedy_equals_one_prompt_at_a_time(model, tokenizer):
    batched = generate(model, tokenizer, PROMPTS, temperature=0, max_new_tokens=12, batch_size=3)
    for prompt, got in zip(PROMPTS, batched, strict=True):
        alone = generate(model, tokenizer, [prompt], temperature=0, max_new_tokens=12, batch_size=1)
        assert got == alone[0]


def test_greedy_equals_hugging_face_generate(model, tokenizer):
    ours = generate(model, tokenizer, PROMPTS, temperature=0, max_new_tokens=10)
    for prompt, got in zip(PROMPTS, ours, strict=True):
        ids = torch.tensor([prompt_ids(tokenizer, prompt)])
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=10,
            do_sample=False,
            eos_token_id=sorted(stop_token_ids(tokenizer, model)),
            pad_token_id=tokenizer.pad_token_id,
        )
        assert got[0].text == tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_prompts_go_through_the_chat_template(model, tokenizer):
    [[generation]] = generate(model, tokenizer, ["hi"], temperature=0, max_new_tokens=2)
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert templated.endswith("<|im_start|>assistant\n")
    assert generation.prompt_tokens == len(tokenizer(templated, add_special_tokens=False)["input_ids"])


def test_length_limit_reports_length(model, tokenizer):
    [[generation]] = generate(model, tokenizer, ["hi"], temperature=0, max_new_tokens=5)
    assert generation.completion_tokens == 5
    assert generation.finish_reason == "length"


def test_stops_at_an_eos_id_from_the_generation_config(model, tokenizer):
    ids = torch.tensor([prompt_ids(tokenizer, "hi")])
    free = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    free_ids = free[0, ids.shape[1] :].tolist()
    stop_id = free_ids[2]  # a model may declare extra eos ids (Llama 3 does); make the third token one
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop_id]
    [[stopped]] = generate(model, tokenizer, ["hi"], temperature=0, max_new_tokens=8)
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens == free_ids.index(stop_id) + 1
    assert stopped.text == tokenizer.decode(free_ids[: free_ids.index(stop_id)], skip_special_tokens=True)


def test_end_of_turn_token_stops_even_when_eos_differs(tokenizer):
    tokenizer.eos_token = "<|endoftext|>"
    stops = stop_token_ids(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stops
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") in stops


def test_n_samples_per_prompt_in_input_order(model, tokenizer):
    results = generate(model, tokenizer, PROMPTS, n=3, temperature=1.0, max_new_tokens=6, seed=0, batch_size=4)
    assert [len(r) for r in results] == [3] * len(PROMPTS)
    assert all(isinstance(g, Generation) for r in results for g in r)
    assert len({g.text for g in results[1]}) == 3  # a near-uniform random model: samples differ
    prompt_lengths = [len(prompt_ids(tokenizer, p)) for p in PROMPTS]
    assert [r[0].prompt_tokens for r in results] == prompt_lengths


def test_seed_makes_sampling_repeatable_whatever_the_batch_size(model, tokenizer):
    settings = {"n": 2, "temperature": 0.9, "max_new_tokens": 5}
    first = generate(model, tokenizer, PROMPTS[:3], seed=7, batch_size=6, **settings)
    again = generate(model, tokenizer, PROMPTS[:3], seed=7, batch_size=1, **settings)
    other = generate(model, tokenizer, PROMPTS[:3], seed=8, batch_size=6, **settings)
    assert first == again
    assert first != other


def test_tiny_top_p_keeps_only_the_most_likely_token(model, tokenizer):
    greedy = generate(model, tokenizer, PROMPTS, temperature=0, max_new_tokens=6)
    nucleus = generate(model, tokenizer, PROMPTS, temperature=1.0, top_p=1e-9, max_new_tokens=6, seed=3)
    assert nucleus == greedy


def test_training_mode_is_restored(model, tokenizer):
    model.train()
    generate(model, tokenizer, ["hi"], temperature=0, max_new_tokens=2)
    assert model.training


def test_prompt_longer_than_the_context_is_refused(model, tokenizer):
    model.config.max_position_embeddings = 60
    with pytest.raises(ValueError, match=r"prompt 1 has \d+ tokens; with max_new_tokens=16 it exceeds"):
        generate(model, tokenizer, ["hi", "a " * 30], max_new_tokens=16)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"n": 0}, "n must be"),
        ({"top_p": 0.0}, "top_p must be"),
        ({"temperature": -1.0}, "temperature must be"),
        ({"n": 17}, r"^n must be in \[1, 16\], got 17$"),
        ({"max_new_tokens": 9000}, r"^max_new_tokens must be in \[1, 8192\]"),
    ],
)
def test_bad_sampling_settings_are_refused(model, tokenizer, setting, message):
    with pytest.raises(ValueError, match=message):
        generate(model, tokenizer, ["hi"], **setting)


def test_cli_writes_one_line_per_completion(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"id": "q1", "prompt": "hi"}, {"prompt": [{"role": "user", "content": "Name a colour."}]}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "completions.jsonl"
    argv = ["generate", "--model", str(tiny_model_dir), "--prompts", str(prompts), "--out", str(out), "-n", "2"]
    code = main([*argv, "--max-new-tokens", "4", "--seed", "1", "--device", "cpu"])
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["prompt_index"], x["prompt_id"], x["sample_index"]) for x in lines] == [
        (0, "q1", 0),
        (0, "q1", 1),
        (1, 1, 0),
        (1, 1, 1),
    ]
    assert lines[2]["prompt"] == rows[1]["prompt"]
    assert all(x["completion_tokens"] == 4 and x["finish_reason"] == "length" for x in lines)
    assert {(x["model"], x["temperature"], x["top_p"], x["max_new_tokens"], x["seed"]) for x in lines} == {
        (str(tiny_model_dir), 0.7, 0.95, 4, 1)
    }
    assert "wrote 4 completions of 2 prompts" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["completions.jsonl"]


def test_cli_reports_a_missing_prompts_file(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code = main(
        ["generate", "--model", str(tiny_model_dir), "--prompts", str(tmp_path / "nope.jsonl"), "--out", str(out)]
    )
    assert code == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


def test_without_a_chat_template_strings_are_used_as_is(tokenizer):
    tokenizer.chat_template = None
    assert prompt_ids(tokenizer, "Once upon a time") == tokenizer("Once upon a time")["input_ids"]
    with pytest.raises(ValueError, match=r"prompt 0: the tokenizer has no chat template"):
        prompt_ids(tokenizer, [{"role": "user", "content": "hi"}])


def test_sampling_follows_the_tempered_nucleus_distribution():
    from dpo_engine.generate import _Sampler

    draws = 4000
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(draws, 4)
    picked = _Sampler(0.5, 0.95, seeds=list(range(draws)), device=torch.device("cpu"))(logits, list(range(draws)))
    # softmax([4, 2, 0, -2]) = [.865, .117, .016, .002]: the 0.95 nucleus is the first two, renormalised
    tempered = [math.exp(4), math.exp(2)]
    expected = [t / sum(tempered) for t in tempered]
    counts = torch.bincount(picked, minlength=4).tolist()
    assert counts[2:] == [0, 0]
    assert counts[0] / draws == pytest.approx(expected[0], abs=0.025)
