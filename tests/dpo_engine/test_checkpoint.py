import json
import shutil

import pytest

from dpo_engine import TrainCallbacks, TrainConfig, train, trainer
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
    held_out = {"eval_data": str(make_preference_file("eval", 4, seed=1)), "eval_every": 2, "lora_r": lora_r}
    whole = train(config_for(tiny_model_dir, data, tmp_path / "whole", **held_out))

    done = []
    stop_after_four = TrainCallbacks(on_metrics=lambda m: m["split"] == "train" and done.append(m),
                                     should_stop=lambda: len(done) >= 4)
    interrupted = config_for(tiny_model_dir, data, tmp_path / "cut", save_every=2, **held_out)
    assert train(interrupted, callbacks=stop_after_four).stopped
    # Simulate a crash after step 4 was logged but before its checkpoint: resume must redo step 3 and 4.
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-00000004")
    assert latest_checkpoint(tmp_path / "cut").name == "step-00000002"
    resumed = train(config_for(tiny_model_dir, data, tmp_path / "cut", save_every=2, resume=True, **held_out))

    assert resumed.steps == whole.steps == 6
    assert [(row["step"], row["split"]) for row in curve(whole.out_dir) if row["split"] == "eval"] == [
        (0, "eval"), (2, "eval"), (4, "eval"), (6, "eval")]
    assert curve(resumed.out_dir) == curve(whole.out_dir)
    assert resumed.eval_before == whole.eval_before


def moving_clock(monkeypatch):
    """A clock the test moves on by hand, in place of the trainer's."""
    now = [0.0]
    monkeypatch.setattr(trainer, "_clock", lambda: now[0])
    return now


def test_a_checkpoint_follows_the_first_step_past_the_time_limit(tiny_model_dir, make_preference_file, tmp_path,
                                                                 monkeypatch):
    now, saved = moving_clock(monkeypatch), []

    def one_minute_per_step(metrics):
        now[0] += 60.0

    config = config_for(tiny_model_dir, make_preference_file(n=16), tmp_path / "run", grad_accum=1,
                        save_every_minutes=2.5, keep_checkpoints=0)  # 8 steps
    callbacks = TrainCallbacks(on_metrics=one_minute_per_step, on_checkpoint=lambda step, path: saved.append(step))
    train(config, callbacks=callbacks)
    # Steps end at minutes 1, 2, 3 (past 2.5: saved), 4, 5, 6 (2.5 past the last one: saved), 7; 8 is the last.
    assert saved == [3, 6]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]


def test_the_caller_hears_of_a_checkpoint_before_it_is_written(tiny_model_dir, make_preference_file, tmp_path):
    # A caller stores its buffered curve then: a process killed during the save must not leave a checkpoint
    # whose steps the caller never stored (a resume would skip them, leaving a gap in the curve).
    heard: list[tuple[int, bool]] = []
    config = config_for(tiny_model_dir, make_preference_file(n=16), tmp_path / "run", grad_accum=1, save_every=3,
                        keep_checkpoints=0)  # 8 steps
    written = lambda step: (tmp_path / "run" / "checkpoints" / f"step-{step:08d}").exists()  # noqa: E731
    train(config, callbacks=TrainCallbacks(before_checkpoint=lambda step: heard.append((step, written(step)))))
    assert heard == [(3, False), (6, False)]
    assert written(3)
    assert written(6)


def test_zero_minutes_turns_time_based_checkpoints_off(tiny_model_dir, make_preference_file, tmp_path, monkeypatch):
    now = moving_clock(monkeypatch)
    config = config_for(tiny_model_dir, make_preference_file(n=8), tmp_path / "run", save_every_minutes=0)
    train(config, callbacks=TrainCallbacks(on_metrics=lambda metrics: now.__setitem__(0, now[0] + 3600)))
    assert latest_checkpoint(tmp_path / "run") is None


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
