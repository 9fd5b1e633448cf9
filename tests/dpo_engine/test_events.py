"""``--events``: a launched run's callbacks as JSON lines, read back by the caller that launched it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpo_engine import TrainCallbacks
from dpo_engine.cli import main
from dpo_engine.events import EventReader, EventWriter, dispatch, result_from_event

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
FAST = ["--optimizer", "adamw", "--lr", "1e-3", "--warmup-steps", "0", "--batch-size", "1", "--grad-accum", "1"]


def test_the_reader_returns_whole_lines_only_and_each_once(tmp_path):
    path = tmp_path / "events.jsonl"
    reader = EventReader(path)
    assert reader.read() == []
    EventWriter(path).write("log", line="one")
    with path.open("a") as out:
        out.write('{"event": "log", "li')  # a line still being written
    assert reader.read() == [{"event": "log", "line": "one"}]
    with path.open("a") as out:
        out.write('ne": "two"}\n')
    assert reader.read() == [{"event": "log", "line": "two"}]
    assert reader.read() == []


def test_dispatch_hands_each_event_to_the_callback_it_came_from(tmp_path):
    path = tmp_path / "events.jsonl"
    seen: list[tuple] = []
    writer = EventWriter(path)
    wired = writer.callbacks(TrainCallbacks())
    wired.on_schedule({"total_steps": 3})
    wired.on_metrics({"step": 1, "loss": float("nan")})
    wired.on_progress(1, 3, 2.5)
    wired.on_log("hello")
    wired.before_checkpoint(1)
    wired.on_checkpoint(1, tmp_path / "checkpoints" / "step-1")
    target = TrainCallbacks(
        on_schedule=lambda s: seen.append(("schedule", s)), on_metrics=lambda m: seen.append(("metrics", m["step"])),
        on_progress=lambda *a: seen.append(("progress", a)), on_log=lambda line: seen.append(("log", line)),
        before_checkpoint=lambda s: seen.append(("before", s)), on_checkpoint=lambda s, p: seen.append(("saved", p)),
    )
    for event in EventReader(path).read():
        dispatch(event, target)
    assert seen == [("schedule", {"total_steps": 3}), ("metrics", 1), ("progress", (1, 3, 2.5)), ("log", "hello"),
                    ("before", 1), ("saved", tmp_path / "checkpoints" / "step-1")]


def test_one_process_writes_its_run_and_its_result_as_events(tiny_model_dir, make_preference_file, tmp_path):
    events = tmp_path / "events.jsonl"
    code = main(["train", "--data", str(make_preference_file(n=4)), "--model", str(tiny_model_dir), "--out",
                 str(tmp_path / "run"), "--epochs", "1", *FAST, f"--events={events}"])
    assert code == 0
    read = EventReader(events).read()
    kinds = [e["event"] for e in read]
    assert kinds[-1] == "result"
    assert {"schedule", "metrics", "progress", "log"} <= set(kinds)
    assert [e["metrics"]["step"] for e in read if e["event"] == "metrics"] == [1, 2, 3, 4]
    result = result_from_event(read[-1])
    assert (result.steps, result.stopped, result.final_model_dir) == (4, False, tmp_path / "run" / "final")


def test_bad_input_is_an_error_event(tiny_model_dir, tmp_path):
    events = tmp_path / "events.jsonl"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    code = main(["train", "--data", str(bad), "--model", str(tiny_model_dir), f"--events={events}"])
    assert code == 2
    [event] = EventReader(events).read()
    assert event["event"] == "error"
    assert str(bad) in event["message"]


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_under_torchrun_rank_0_alone_reports_and_sigterm_stops_cleanly_with_a_checkpoint(
    tiny_model_dir, make_preference_file, tmp_path
):
    events, out = tmp_path / "events.jsonl", tmp_path / "run"
    args = ["--data", str(make_preference_file(n=8)), "--model", str(tiny_model_dir), "--out", str(out),
            "--epochs", "100", *FAST, f"--events={events}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    launcher = subprocess.Popen([*TORCHRUN, "-m", "dpo_engine", "train", *args], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0)
    reader, seen = EventReader(events), []
    try:
        deadline = time.monotonic() + 300
        while not any(e["event"] == "progress" and e["step"] >= 2 for e in seen):
            assert launcher.poll() is None, launcher.communicate()[0].decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "two steps within 300 s"
            seen += reader.read()
            time.sleep(0.2)
        os.killpg(launcher.pid, signal.SIGTERM)
        output = launcher.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    seen += reader.read()
    schedules = [e for e in seen if e["event"] == "schedule"]
    assert len(schedules) == 1, "rank 0 alone writes"
    assert schedules[0]["schedule"]["world_size"] == 2
    result = result_from_event(seen[-1])
    assert result.stopped, output[-3000:]
    assert (out / "checkpoints" / f"step-{result.steps:08d}").is_dir(), sorted(p.name for p in out.rglob("*"))
