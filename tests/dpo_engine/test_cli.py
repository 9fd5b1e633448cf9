import dataclasses
import json

import pytest
from transformers import AutoModelForCausalLM

from dpo_engine.cli import main
from dpo_engine.config import GenerateConfig, TrainConfig, config_fields


def test_train_writes_metrics_and_final_model(tiny_model_dir, make_preference_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(make_preference_file(n=8)), "--model", str(tiny_model_dir), "--out", str(out),
                 "--optimizer", "adamw", "--lr", "1e-3", "--warmup-steps", "0", "--batch-size", "4",
                 "--grad-accum", "1", "--epochs", "1", "--eval-data", str(make_preference_file("eval", 4, seed=1))])
    assert code == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(row["step"], row["split"]) for row in rows] == [(0, "eval"), (1, "train"), (2, "train"), (2, "eval")]
    assert AutoModelForCausalLM.from_pretrained(out / "final") is not None
    assert f"model in {out / 'final'}" in capsys.readouterr().out


def test_unknown_model_is_one_line_error(make_preference_file, tmp_path, capsys):
    code = main(["train", "--data", str(make_preference_file(n=4)), "--model", str(tmp_path / "no-such-model"),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ")
    assert "no-such-model" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_data_file_is_one_line_error(tiny_model_dir, tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "missing.jsonl"), "--model", str(tiny_model_dir),
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "missing.jsonl: no such file or folder" in capsys.readouterr().err


def test_inconsistent_options_exit_2(tiny_model_dir, tmp_path, capsys):
    code = main(["train", "--data", "x.jsonl", "--model", str(tiny_model_dir), "--reference", "adapter-disabled"])
    assert code == 2
    assert "needs LoRA" in capsys.readouterr().err


def test_train_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text


def test_generate_subcommand_is_wired(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m dpo_engine generate" in capsys.readouterr().out


def test_generate_refuses_out_of_range_sampling_by_option_name(tmp_path, capsys):
    code = main(["generate", "--prompts", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "o.jsonl"),
                 "--top-p", "1.5"])
    assert code == 2
    assert capsys.readouterr().err == "error: --top-p must be in (0, 1], got 1.5\n"


def test_generate_help_shows_generate_configs_defaults_and_bounds(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for spec in config_fields(GenerateConfig):
        assert spec.flag in text
    assert "Must be in [0, 5]. (default: 0.7)" in text
    assert "Must be in (0, 1]. (default: 0.95)" in text
    assert "Must be in [1, 8192]. (default: 256)" in text
