import argparse
import dataclasses
import inspect
import subprocess
import sys

import pytest

from dpo_engine.config import (
    LOSS_NAMES,
    ConfigError,
    GenerateConfig,
    TrainConfig,
    add_config_arguments,
    check_values,
    config_fields,
    config_from_args,
)


def parser(cls=None, **kwargs):
    p = argparse.ArgumentParser(prog="engine")
    if cls is None:
        add_config_arguments(p, **kwargs)  # the signature the management commands call
    else:
        add_config_arguments(p, cls, **kwargs)
    return p


@pytest.mark.parametrize("cls", [TrainConfig, GenerateConfig])
def test_every_field_has_help(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f.name


def test_help_documents_every_option_and_default():
    text = " ".join(parser().format_help().split())
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text
    assert "(default: 0.1)" in text  # --beta
    assert "(default: auto)" in text


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


def test_schedule_options_show_auto_and_take_auto_or_none():
    p = parser()
    shown_auto = {action.dest for action in p._actions if "(default: auto)" in (action.help or "")}
    assert shown_auto - {"reference"} == {"optimizer", "lr", "warmup_steps", "epochs", "batch_size", "grad_accum",
                                          "eval_every"}  # --reference has a choice named auto
    args = p.parse_args(["--data", "d", "--lr", "auto", "--epochs", "none", "--batch-size", "4"])
    assert (args.lr, args.epochs, args.batch_size, args.optimizer) == (None, None, 4, None)
    assert "10% of the run's steps" in p.format_help()  # a literal % survives argparse's formatting


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
        ({"loss": []}, "--loss needs at least one loss name"),
        ({"fsdp": True, "lora_r": 8}, "LoRA runs use DDP"),
    ],
)
def test_inconsistent_options_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TrainConfig(data="d.jsonl"), **changes).validate()


def test_unknown_loss_is_rejected_without_torch():
    with pytest.raises(ConfigError, match=r"--loss must be one of sigmoid, .* got 'dpo'") as info:
        TrainConfig(data="d.jsonl", loss=["sigmoid", "dpo"]).validate()
    assert info.value.field == "loss"


@pytest.mark.parametrize(
    ("cls", "changes", "message"),
    [
        (TrainConfig, {"lr": 0.0}, r"--lr must be greater than 0, got 0"),
        (TrainConfig, {"sft_lr": -1e-5}, r"--sft-lr must be greater than 0"),
        (TrainConfig, {"weight_decay": -0.1}, r"--weight-decay must be at least 0, got -0.1"),
        (TrainConfig, {"epochs": 0}, r"--epochs must be at least 1, got 0"),
        (TrainConfig, {"beta": 0.0}, r"--beta must be greater than 0"),
        (TrainConfig, {"label_smoothing": 0.5}, r"--label-smoothing must be in \[0, 0.5\), got 0.5"),
        (TrainConfig, {"lora_dropout": 1.0}, r"--lora-dropout must be in \[0, 1\)"),
        (TrainConfig, {"max_grad_norm": -1.0}, r"--max-grad-norm must be at least 0"),
        (TrainConfig, {"seed": -1}, r"--seed must be in \[0, 2147483647\]"),
        (TrainConfig, {"batch_size": 2.5}, r"--batch-size must be an integer, got 2.5"),
        (TrainConfig, {"grad_accum": True}, r"--grad-accum must be an integer, got True"),
        (TrainConfig, {"beta": "strong"}, r"--beta must be a number, got 'strong'"),
        (TrainConfig, {"lr": float("nan")}, r"--lr must be a number, got nan"),
        (TrainConfig, {"optimizer": "sgd"}, r"--optimizer must be one of rmsprop, adamw, got 'sgd'"),
        (TrainConfig, {"loss": "sigmoid"}, r"--loss must be a list, got 'sigmoid'"),
        (GenerateConfig, {"top_p": 1.5}, r"--top-p must be in \(0, 1\], got 1.5"),
        (GenerateConfig, {"top_p": 0.0}, r"--top-p must be in \(0, 1\], got 0"),
        (GenerateConfig, {"temperature": 5.5}, r"--temperature must be in \[0, 5\], got 5.5"),
        (GenerateConfig, {"n": 17}, r"-n must be in \[1, 16\], got 17"),
        (GenerateConfig, {"max_new_tokens": 0}, r"--max-new-tokens must be in \[1, 8192\], got 0"),
        (GenerateConfig, {"batch_size": 0}, r"--batch-size must be at least 1, got 0"),
        (GenerateConfig, {"dtype": "int8"}, r"--dtype must be one of auto, float32, bfloat16, float16"),
    ],
)
def test_out_of_bounds_values_are_refused_by_option_name(cls, changes, message):
    config = dataclasses.replace(cls(**{spec.name: "x" for spec in config_fields(cls) if spec.required}), **changes)
    with pytest.raises(ConfigError, match=message) as info:
        config.validate()
    assert info.value.field == next(iter(changes))


@pytest.mark.parametrize("cls", [TrainConfig, GenerateConfig])
def test_defaults_pass_their_own_checks(cls):
    cls(**{spec.name: "x" for spec in config_fields(cls) if spec.required}).validate()


def test_every_numeric_training_setting_declares_bounds():
    numeric = [spec for spec in config_fields(TrainConfig) if spec.type in (int, float)]
    unbounded = [spec.name for spec in numeric if spec.min is None and spec.max is None]
    assert unbounded == ["loss_weights"]


def test_config_fields_describe_type_default_help_bounds_and_choices():
    specs = {spec.name: spec for spec in config_fields(GenerateConfig)}
    assert (specs["top_p"].type, specs["top_p"].default, specs["top_p"].flag) == (float, 0.95, "--top-p")
    assert (specs["top_p"].min, specs["top_p"].min_exclusive, specs["top_p"].max) == (0, True, 1)
    assert specs["n"].flag == "-n"
    assert (specs["seed"].optional, specs["seed"].default) == (True, 0)
    assert (specs["prompts"].required, specs["prompts"].default) == (True, None)
    assert specs["dtype"].choices == ("auto", "float32", "bfloat16", "float16")
    loss = next(spec for spec in config_fields(TrainConfig) if spec.name == "loss")
    assert (loss.many, loss.type, loss.choices, loss.default) == (True, str, LOSS_NAMES, ["sigmoid"])


def test_check_values_takes_a_subset_and_names_python_names_on_request():
    check_values(GenerateConfig, {"temperature": 0.0, "top_p": 1.0})
    with pytest.raises(ConfigError, match=r"^temperature must be in \[0, 5\], got 9$"):
        check_values(GenerateConfig, {"temperature": 9}, by_name=True)
    with pytest.raises(ConfigError, match="GenerateConfig has no option 'topp'"):
        check_values(GenerateConfig, {"topp": 0.5})


def test_generate_options_come_from_generate_config():
    args = parser(GenerateConfig).parse_args(["--prompts", "p.jsonl", "--out", "o.jsonl"])
    config = config_from_args(args, GenerateConfig)
    assert config == GenerateConfig(prompts="p.jsonl", out="o.jsonl")
    assert (config.temperature, config.top_p, config.max_new_tokens, config.seed) == (0.7, 0.95, 256, 0)


def test_generate_seed_none_draws_a_fresh_one():
    args = parser(GenerateConfig).parse_args(["--prompts", "p", "--out", "o", "--seed", "none", "-n", "3"])
    assert (args.seed, args.n) == (None, 3)


def test_generate_function_defaults_are_generate_configs():
    from dpo_engine.generate import generate

    defaults = GenerateConfig(prompts="-", out="-")
    parameters = inspect.signature(generate).parameters
    settings = [p.name for p in parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    shared = [name for name in settings if name in {f.name for f in dataclasses.fields(GenerateConfig)}]
    assert shared == ["n", "temperature", "top_p", "max_new_tokens", "seed", "batch_size"]
    assert {name: parameters[name].default for name in shared} == {name: getattr(defaults, name) for name in shared}


def test_only_given_leaves_untyped_options_out_and_exclude_drops_fields():
    p = parser(exclude=("data", "out"), only_given=True)
    args = p.parse_args(["--lr", "1e-3"])
    assert vars(args) == {"lr": 1e-3}
    assert "--out" not in p.format_help()


def test_argparse_refuses_an_unknown_loss():
    with pytest.raises(SystemExit):
        parser().parse_args(["--data", "d", "--loss", "dpo"])


def test_importing_the_configs_imports_no_torch():
    code = (
        "import sys, dpo_engine.config\n"
        "from dpo_engine.config import GenerateConfig, TrainConfig, config_fields\n"
        "config_fields(TrainConfig); TrainConfig(data='d').validate(); GenerateConfig('p', 'o').validate()\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'django') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
