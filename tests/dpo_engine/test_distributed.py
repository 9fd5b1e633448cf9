import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpo_engine import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_processes_train_like_one_process_with_accumulation(tiny_model_dir, make_preference_file, tmp_path):
    # 11 pairs in steps of 8: the last step's 3 pairs fall 2 and 1 on the two processes, and must weigh as they
    # do in one process's single micro-batch of 3.
    data = make_preference_file(n=11)
    common = ["--data", str(data), "--model", str(tiny_model_dir), "--optimizer", "adamw", "--lr", "1e-3",
              "--warmup-steps", "0", "--batch-size", "4", "--epochs", "1", "--log-every", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    launched = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "dpo_engine", "train", *common,
         "--grad-accum", "1", "--out", str(tmp_path / "ddp")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "replicas agree" in launched.stdout + launched.stderr

    # One process accumulating two micro-batches sees the same pairs per step as two processes with one each.
    single = train(TrainConfig(data=str(data), model=str(tiny_model_dir), out=str(tmp_path / "single"),
                               optimizer="adamw", lr=1e-3, warmup_steps=0, batch_size=4, grad_accum=2,
                               epochs=1))
    ddp_rows, single_rows = rows(tmp_path / "ddp"), rows(single.out_dir)
    assert [r["step"] for r in ddp_rows] == [1, 2]
    for a, b in zip(ddp_rows, single_rows, strict=True):
        for name in ("loss", "rewards/margins", "logps/chosen", "grad_norm"):
            assert a[name] == pytest.approx(b[name], rel=1e-5, abs=1e-6), name
    assert (tmp_path / "ddp" / "final" / "config.json").exists()
