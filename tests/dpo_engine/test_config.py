import argparse
import dataclasses

import pytest

from dpo_engine.config import TrainConfig, add_config_arguments, config_from_args


def parser():
    p = argparse.ArgumentParser(prog="train")
    add_config_arguments(p)
    return p


def test_every_field_has_help():
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f.name


def test_help_documents_every_option_and_default():
    text = " ".join(parser().format_help().split())
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text
    assert "(default: 1e-06)" in text
    assert "(default: rmsprop)" in text


def test_options_parse_into_config():
    args = parser().parse_args([
        "--data", "d.jsonl", "--loss", "sigmoid", "ipo", "--loss-weights", "1", "0.5", "--optimizer", "adamw",
        "--max-length", "none", "--lora-r", "8", "--resume",
    ])
    config = config_from_args(args)
    assert config.loss == ["sigmoid", "ipo"]
    assert config.loss_weights == [1.0, 0.5]
    assert config.max_length is None
    assert config.resume is True
    assert config.reference_mode == "adapter-disabled"


def test_defaults_follow_the_paper():
    config = TrainConfig(data="d.jsonl")
    assert (config.optimizer, config.lr, config.warmup_steps) == ("rmsprop", 1e-6, 150)
    assert config.batch_size * config.grad_accum == 64


def test_full_fine_tune_scores_the_reference_once():
    assert TrainConfig(data="d.jsonl").reference_mode == "precomputed"


def test_data_is_required():
    with pytest.raises(SystemExit):
        parser().parse_args([])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss_weights": [1.0, 2.0]}, "--loss-weights has 2 values for 1 losses"),
        ({"reference": "adapter-disabled"}, "needs LoRA"),
        ({"max_length": 64, "max_prompt_length": 64}, "must be below --max-length"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
    ],
)
def test_inconsistent_options_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TrainConfig(data="d.jsonl"), **changes).validate()
