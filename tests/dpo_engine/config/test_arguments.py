"""``config_to_args`` is the inverse of ``config_from_args``: a launched run gets exactly the caller's config."""

import dataclasses
from typing import Any

import pytest

from dpo_engine.cli import build_parser
from dpo_engine.config import FieldSpec, TrainConfig, config_fields, config_from_args, config_to_args


def _parsed(args: list[str]) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *args]), TrainConfig)


def _other_value(spec: FieldSpec) -> Any:
    """A valid value of ``spec`` that differs from its default."""
    if spec.type is bool:
        return not spec.default
    if spec.choices is not None:
        other = [c for c in spec.choices if c not in (spec.default or [])][-1]
        return [other] if spec.many else other
    if spec.type is str:
        return ["q_proj", "v_proj"] if spec.many else f"-{spec.name}/with space"
    if spec.many:
        return [0.5, 1e-7]
    low = spec.min if spec.min is not None else 0
    value = (spec.default if spec.default is not None else low) + 1
    return spec.type(value if spec.max is None or value < spec.max else low + (spec.max - low) / 3)


@pytest.mark.parametrize("spec", config_fields(TrainConfig), ids=lambda spec: spec.name)
def test_every_field_set_away_from_its_default_comes_back(spec):
    config = TrainConfig(data="pairs.jsonl", **{spec.name: _other_value(spec)} if spec.name != "data" else {})
    if spec.name == "loss_weights":
        config.loss = ["sigmoid", "ipo"]
    assert _parsed(config_to_args(config)) == config


def test_a_default_config_is_its_data_alone():
    assert config_to_args(TrainConfig(data="pairs.jsonl")) == ["--data=pairs.jsonl"]


def test_an_optional_limit_switched_off_comes_back_as_none():
    config = TrainConfig(data="pairs.jsonl", max_length=None, max_prompt_length=None)
    assert _parsed(config_to_args(config)) == config


def test_many_fields_at_once_come_back():
    config = TrainConfig(data="d.jsonl", eval_data="e.jsonl", model="/m", out="/o", loss=["ipo", "sigmoid"],
                         loss_weights=[0.5, 2.0], lr=1e-3, optimizer="adamw", fsdp=True, resume=True, device="cpu",
                         epochs=3, save_every_minutes=0.25, eval_every=0)
    assert _parsed(config_to_args(config)) == config
    assert dataclasses.asdict(_parsed(config_to_args(config))) == dataclasses.asdict(config)


def test_a_list_item_that_would_read_as_an_option_is_refused():
    with pytest.raises(ValueError, match="--lora-target-modules"):
        config_to_args(TrainConfig(data="d.jsonl", lora_target_modules=["--evil"]))
