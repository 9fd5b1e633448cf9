"""The engine's settings as the web takes them: checked once, derived from dpo_engine's configs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dpo_engine.config import GenerateConfig
from training.engine_settings import (
    RUN_OWNED_TRAIN_FIELDS,
    SAMPLING_FIELDS,
    generation_settings_check,
    train_settings_fields,
    training_config_check,
)


def test_an_unknown_loss_is_refused_before_anything_is_queued():
    with pytest.raises(ValueError, match="loss"):
        training_config_check({"loss": ["nope"]})


def test_a_wrong_type_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"^lr must be a number"):
        training_config_check({"lr": "abc"})


def test_a_field_the_run_sets_itself_is_refused():
    with pytest.raises(ValueError, match="data"):
        training_config_check({"data": "/etc/passwd"})


def test_sampling_settings_not_given_take_the_engine_defaults():
    defaults = GenerateConfig(prompts="-", out="-")
    assert generation_settings_check({"n": 3}) == {
        "n": 3,
        **{name: getattr(defaults, name) for name in SAMPLING_FIELDS if name != "n"},
    }


def test_a_sampling_setting_out_of_bounds_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"^top_p must be in"):
        generation_settings_check({"top_p": 0})


def test_the_web_app_loads_every_page_without_torch():
    code = (
        "import sys, django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
        "from django.urls import get_resolver; get_resolver().url_patterns; "
        "import training.forms, training.engine_settings, training.api; "
        "loaded = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _train_settings_model():
    from pydantic import create_model

    return create_model("Settings", **train_settings_fields())


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"batch_size": float("inf")}, "batch_size"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": 0}, "lr"),
        ({"loss": ["sigmoid", "nope"]}, "loss"),
        ({"loss_weights": [1.0, float("inf")]}, "loss_weights"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
    ],
)
def test_the_schema_fields_refuse_what_the_engine_refuses(values, field):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as raised:
        _train_settings_model()(**values)
    assert raised.value.errors()[0]["loc"][0] == field


def test_the_schema_fields_leave_out_what_a_run_sets_itself():
    assert not set(train_settings_fields()) & RUN_OWNED_TRAIN_FIELDS
