import json
import shutil

import pytest

from dpo_engine import TrainCallbacks, TrainConfig, train
from dpo_engine.checkpoint import latest_checkpoint


def config_for(tiny_model_dir, data, out, **changes):
    values = {"data": str(data), "model": str(tiny_model_dir), "out": str(out), "optimizer": "adamw", "lr": 1e-3,
              "warmup_steps": 2, "batch_size": 4, "grad_accum": 2, "epochs": 2, "log_every": 100}
    values.update(changes)
    return TrainConfig(**values)


def curve(out):
    """metrics.jsonl without the wall-clock throughput, which differs between any two runs."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "tokens_per_second"} for row in rows]


@pytest.mark.parametrize("lora_r", [0, 4])
def test_resume_continues_the_same_curve(tiny_model_dir, make_preference_file, tmp_path, lora_r):
    data = make_preference_file(n=24)  # 3 steps per epoch, 6 in all; epoch 2 reshuffles
    whole = train(config_for(tiny_model_dir, data, tmp_path / "whole", lora_r=lora_r))

    done = []
    stop_after_four = TrainCallbacks(on_metrics=lambda m: done.append(m), should_stop=lambda: len(done) >= 4)
    interrupted = config_for(tiny_model_dir, data, tmp_path / "cut", lora_r=lora_r, save_every=2)
    assert train(interrupted, callbacks=stop_after_four).stopped
    # Simulate a crash after step 4 was logged but before its checkpoint: resume must redo step 3 and 4.
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-00000004")
    assert latest_checkpoint(tmp_path / "cut").name == "step-00000002"
    resumed = train(config_for(tiny_model_dir, data, tmp_path / "cut", lora_r=lora_r, save_every=2, resume=True))

    assert resumed.steps == whole.steps == 6
    assert curve(resumed.out_dir) == curve(whole.out_dir)


def test_keeps_only_the_newest_checkpoints(tiny_model_dir, make_preference_file, tmp_path):
    config = config_for(tiny_model_dir, make_preference_file(n=16), tmp_path / "run", grad_accum=1, epochs=2,
                        save_every=1, keep_checkpoints=2)
    train(config)
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["step-00000006", "step-00000007"]


def test_checkpoint_holds_everything_to_resume(tiny_model_dir, make_preference_file, tmp_path):
    config = config_for(tiny_model_dir, make_preference_file(n=8), tmp_path / "run", save_every=1, epochs=2)
    train(config)
    step = latest_checkpoint(tmp_path / "run")
    assert {p.name for p in step.iterdir()} == {"weights.pt", "optimizer.pt", "scheduler.pt", "state.json",
                                                "rng-rank0.pt"}
    assert json.loads((step / "state.json").read_text())["step"] == 1
