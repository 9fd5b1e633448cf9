import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from dpo_engine import TrainCallbacks, TrainConfig, train
from dpo_engine.components import disable_dropout
from dpo_engine.data import load_pairs
from dpo_engine.distributed import DistContext
from dpo_engine.sft import run_sft

TRL_NAMES = {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
             "logps/rejected", "grad_norm", "learning_rate", "tokens_per_second", "epoch", "step"}
EVAL_NAMES = {"eval/loss", "eval/rewards/chosen", "eval/rewards/rejected", "eval/rewards/accuracies",
              "eval/rewards/margins", "eval/logps/chosen", "eval/logps/rejected"}


def small_config(tiny_model_dir, data, tmp_path, **changes):
    values = {"data": str(data), "model": str(tiny_model_dir), "out": str(tmp_path / "run"), "optimizer": "adamw",
              "lr": 1e-3, "warmup_steps": 0, "batch_size": 4, "grad_accum": 1, "epochs": 1, "log_every": 100}
    values.update(changes)
    return TrainConfig(**values)


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_learns_synthetic_preference_on_held_out_pairs(tiny_model_dir, make_preference_file, tmp_path):
    config = small_config(tiny_model_dir, make_preference_file("train", 64), tmp_path, lr=3e-3, epochs=2,
                          batch_size=8, eval_data=str(make_preference_file("eval", 32, seed=1)))
    result = train(config)
    assert result.eval_before["eval/rewards/accuracies"] < 0.5
    assert result.eval_after["eval/rewards/accuracies"] > 0.9
    assert result.eval_after["eval/rewards/margins"] > 0.5


def test_metrics_every_step_with_trl_names(tiny_model_dir, make_preference_file, tmp_path):
    seen = []
    config = small_config(tiny_model_dir, make_preference_file(n=8), tmp_path, epochs=2)
    result = train(config, callbacks=TrainCallbacks(on_metrics=seen.append))
    written = read_metrics(result.out_dir)
    assert [m["step"] for m in written] == [1, 2, 3, 4]
    assert set(written[0]) >= TRL_NAMES
    assert written == seen
    assert [m["epoch"] for m in written] == [0.5, 1.0, 1.5, 2.0]


def test_first_step_has_zero_rewards_against_frozen_reference(tiny_model_dir, make_preference_file, tmp_path):
    result = train(small_config(tiny_model_dir, make_preference_file(n=4), tmp_path))
    first = read_metrics(result.out_dir)[0]
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert first["loss"] == pytest.approx(0.6931, abs=1e-4)


def test_progress_and_log_callbacks(tiny_model_dir, make_preference_file, tmp_path):
    progress, lines = [], []
    config = small_config(tiny_model_dir, make_preference_file(n=12), tmp_path, log_every=1)
    train(config, callbacks=TrainCallbacks(on_progress=lambda *a: progress.append(a), on_log=lines.append))
    assert [(step, total) for step, total, _ in progress] == [(1, 3), (2, 3), (3, 3)]
    assert progress[-1][2] == 0.0
    assert any(line.startswith("step 3/3") for line in lines)


def test_stop_callback_ends_between_steps(tiny_model_dir, make_preference_file, tmp_path):
    steps = []
    callbacks = TrainCallbacks(on_metrics=lambda m: steps.append(m["step"]), should_stop=lambda: len(steps) >= 2)
    result = train(small_config(tiny_model_dir, make_preference_file(n=16), tmp_path), callbacks=callbacks)
    assert result.stopped
    assert result.steps == 2
    assert result.final_model_dir is None
    assert (result.out_dir / "checkpoints" / "step-00000002" / "state.json").exists()


def test_final_model_loads_and_has_changed(tiny_model_dir, make_preference_file, tmp_path):
    result = train(small_config(tiny_model_dir, make_preference_file(n=8), tmp_path))
    trained = AutoModelForCausalLM.from_pretrained(result.final_model_dir)
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert (result.final_model_dir / "tokenizer_config.json").exists()
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, start.model.layers[0].mlp.up_proj.weight)


def test_precomputed_reference_matches_frozen(tiny_model_dir, make_preference_file, tmp_path):
    data = make_preference_file(n=8)
    frozen_log, precomputed_log = [], []
    frozen = train(small_config(tiny_model_dir, data, tmp_path / "a", epochs=2, reference="frozen"),
                   callbacks=TrainCallbacks(on_log=frozen_log.append))
    precomputed = train(small_config(tiny_model_dir, data, tmp_path / "b", epochs=2, reference="precomputed"),
                        callbacks=TrainCallbacks(on_log=precomputed_log.append))
    assert not any("precomputed reference" in line for line in frozen_log), "the frozen run keeps a model copy"
    assert any("precomputed reference" in line for line in precomputed_log)
    pairs = list(zip(read_metrics(frozen.out_dir), read_metrics(precomputed.out_dir), strict=True))
    assert pairs[-1][0]["rewards/margins"] != pytest.approx(0.0, abs=1e-4), "the policy moved away from the reference"
    for a, b in pairs:
        assert b["rewards/margins"] == pytest.approx(a["rewards/margins"], abs=1e-4)
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)


def test_lora_run_uses_adapter_disabled_reference_and_exports_merged(tiny_model_dir, make_preference_file,
                                                                     tmp_path):
    config = small_config(tiny_model_dir, make_preference_file(n=8), tmp_path, lora_r=4, lr=1e-2, epochs=2)
    result = train(config)
    metrics = read_metrics(result.out_dir)
    assert metrics[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert metrics[-1]["rewards/margins"] != pytest.approx(0.0, abs=1e-6)
    merged = AutoModelForCausalLM.from_pretrained(result.final_model_dir)
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_sft_weight_adds_chosen_nll(tiny_model_dir, make_preference_file, tmp_path):
    data = make_preference_file(n=4)
    plain = read_metrics(train(small_config(tiny_model_dir, data, tmp_path / "a")).out_dir)[0]
    with_sft = read_metrics(train(small_config(tiny_model_dir, data, tmp_path / "b", sft_weight=1.0)).out_dir)[0]
    # Step 1 starts at the reference, so the DPO part is log 2 and the rest is the mean chosen-token NLL.
    assert with_sft["loss"] - plain["loss"] > 1.0


def test_sft_phase_lowers_chosen_nll(tiny_model_dir, make_preference_file, tokenizer, tmp_path):
    pairs, _ = load_pairs(make_preference_file(n=16), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    disable_dropout(model)
    config = small_config(tiny_model_dir, "unused", tmp_path, sft_epochs=3, sft_lr=3e-3)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    losses = run_sft(model, pairs, config=config, ctx=ctx, pad_token_id=tokenizer.pad_token_id,
                     dtype=torch.float32, log=lambda line: None)
    assert len(losses) == 12
    assert losses[-1] < losses[0] - 0.5


def test_sft_epochs_make_the_reference(tiny_model_dir, make_preference_file, tmp_path):
    config = small_config(tiny_model_dir, make_preference_file(n=8), tmp_path, sft_epochs=1, sft_lr=3e-3)
    result = train(config)
    assert (result.out_dir / "sft" / "config.json").exists()
    # The policy starts at the SFT model, which is also the reference: rewards start at zero.
    assert read_metrics(result.out_dir)[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)


def test_a_small_run_resolves_its_schedule_and_takes_the_promised_steps(tiny_model_dir, make_preference_file,
                                                                        tmp_path):
    schedules, lines, seen = [], [], []
    config = TrainConfig(data=str(make_preference_file(n=10)), model=str(tiny_model_dir), out=str(tmp_path / "run"),
                         log_every=100)
    callbacks = TrainCallbacks(on_schedule=schedules.append, on_log=lines.append, on_metrics=seen.append)
    result = train(config, callbacks=callbacks)
    # 10 pairs: batch 4, three steps an epoch (4, 4 and the remaining 2), three epochs.
    assert schedules == [result.schedule]
    assert (result.schedule["regime"], result.schedule["effective_batch"]) == ("small-data", 4)
    assert result.steps == result.schedule["total_steps"] == 9
    assert [m["step"] for m in seen] == list(range(1, 10))
    assert [m["epoch"] for m in seen][2::3] == [1.0, 2.0, 3.0]
    assert any(line.startswith("schedule: 10 pairs < 2000: small-data schedule") for line in lines)


def test_held_out_pairs_are_scored_before_periodically_and_after(tiny_model_dir, make_preference_file, tmp_path):
    seen = []
    config = small_config(tiny_model_dir, make_preference_file(n=8), tmp_path, epochs=3, eval_every=2,
                          eval_data=str(make_preference_file("eval", 4, seed=1)))
    result = train(config, callbacks=TrainCallbacks(on_metrics=seen.append))
    evals = [m for m in seen if m["split"] == "eval"]
    assert [m["step"] for m in evals] == [0, 2, 4, 6]
    assert all(set(m) == {"step", "split"} | EVAL_NAMES for m in evals)
    assert [m["step"] for m in seen if m["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [(m["step"], m["split"]) for m in seen][:4] == [(0, "eval"), (1, "train"), (2, "train"), (2, "eval")]
    assert read_metrics(result.out_dir) == seen
    assert {k: evals[0][k] for k in EVAL_NAMES} == result.eval_before
    assert {k: evals[-1][k] for k in EVAL_NAMES} == result.eval_after
    assert evals[1]["eval/rewards/margins"] != evals[0]["eval/rewards/margins"]  # scored with the current weights


def test_a_smaller_last_step_weighs_every_pair_alike(tiny_model_dir, make_preference_file, tmp_path):
    data = make_preference_file(n=7)
    # One step of 7 pairs: micro-batches of 4 and 3 in one run, a single one of 7 in the other. Weighted by their
    # pairs (4/7, 3/7), both give the same update; a plain mean of the two micro-batches (1/2, 1/2) would not.
    split = train(small_config(tiny_model_dir, data, tmp_path / "a", batch_size=4, grad_accum=2, epochs=2))
    whole = train(small_config(tiny_model_dir, data, tmp_path / "b", batch_size=8, grad_accum=1, epochs=2))
    for a, b in zip(read_metrics(split.out_dir), read_metrics(whole.out_dir), strict=True):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
