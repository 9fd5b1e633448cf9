"""The engine's settings as the web app takes them: checks, form fields and API schema fields.

Everything here is derived from ``dpo_engine.config`` (``TrainConfig``, ``GenerateConfig``), which
imports no torch, so drawing a form or validating a request never loads the engine. A default, a
bound or a help text is written once, in the engine's dataclass.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from django import forms
from pydantic import Field

from dpo_engine.config import FieldSpec, GenerateConfig, TrainConfig, check_values, config_fields

# TrainConfig fields a run sets itself (its frozen dataset, its base version, its folder, a resume).
RUN_OWNED_TRAIN_FIELDS = frozenset({"data", "eval_data", "model", "out", "resume"})
# GenerateConfig fields a generation round stores; the others (files, device) are the worker's business.
SAMPLING_FIELDS = ("n", "temperature", "top_p", "max_new_tokens", "seed")


def train_spec(name: str) -> FieldSpec:
    return _SPECS[TrainConfig][name]


def sampling_spec(name: str) -> FieldSpec:
    return _SPECS[GenerateConfig][name]


def sampling_default(name: str) -> Any:
    return sampling_spec(name).default


def training_config_check(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Validate hyper-parameters by type, bounds and consistency as the engine will see them; JSON-ready.

    Raises ``ValueError`` (the engine's ``ConfigError``) naming the first bad field.
    """
    owned = sorted(set(hyperparameters) & RUN_OWNED_TRAIN_FIELDS)
    if owned:
        raise ValueError(f"{', '.join(owned)} cannot be set: the run chooses it")
    check_values(TrainConfig, hyperparameters, by_name=True)
    TrainConfig(data="-", **hyperparameters).validate()
    return json.loads(json.dumps(hyperparameters))


def generation_settings_check(values: dict[str, Any]) -> dict[str, Any]:
    """Every sampling setting a round stores: the given ones checked, the others at the engine's defaults."""
    unknown = sorted(set(values) - set(SAMPLING_FIELDS))
    if unknown:
        raise ValueError(f"unknown sampling option {', '.join(unknown)}")
    check_values(GenerateConfig, values, by_name=True)
    return {name: values.get(name, sampling_default(name)) for name in SAMPLING_FIELDS}


def form_field(spec: FieldSpec, *, label: str, required: bool = True) -> forms.Field:
    """A Django form field with the spec's type, bounds, choices and help (inclusive bounds; the check is exact)."""
    # The help names other options as flags (--grad-accum); on a form they are the fields' names.
    common: dict[str, Any] = {"label": label, "help_text": spec.help.replace("--", ""), "required": required}
    if spec.choices is not None:
        return forms.ChoiceField(choices=[(c, c) for c in spec.choices], **common)
    if spec.type is bool:
        return forms.BooleanField(**{**common, "required": False})
    if spec.type is int:
        return forms.IntegerField(min_value=_int_bound(spec.min), max_value=_int_bound(spec.max), **common)
    if spec.type is float:
        # A text box: a number input would round 5e-7 to its step.
        return forms.FloatField(
            min_value=spec.min, max_value=spec.max, widget=forms.TextInput(attrs={"inputmode": "decimal"}), **common
        )
    return forms.CharField(**common)


def schema_field(spec: FieldSpec) -> tuple[Any, Any]:
    """A pydantic field (type, ``Field``) for a ninja schema; absent means the engine's default.

    The type, choices and bounds are the spec's, item by item for a list; a float must be finite (JSON's
    1e309 parses as infinity). The OpenAPI document shows them, and a wrong value is a 400 naming the field.
    """
    bounds: dict[str, Any] = {}
    if spec.min is not None:
        bounds["gt" if spec.min_exclusive else "ge"] = spec.min
    if spec.max is not None:
        bounds["lt" if spec.max_exclusive else "le"] = spec.max
    if spec.type is float:
        bounds["allow_inf_nan"] = False
    item: Any = Literal[spec.choices] if spec.choices is not None else spec.type  # type: ignore[valid-type]
    if bounds:
        item = Annotated[item, Field(**bounds)]
    value = list[item] if spec.many else item  # type: ignore[valid-type]
    return value | None, Field(default=None, description=f"{spec.help} Default: {spec.default}.")


def train_settings_fields() -> dict[str, tuple[Any, Any]]:
    """The schema fields of every ``TrainConfig`` setting a run may be given (those it sets itself left out)."""
    return {
        spec.name: schema_field(spec)
        for spec in config_fields(TrainConfig)
        if spec.name not in RUN_OWNED_TRAIN_FIELDS
    }


def _int_bound(value: float | None) -> int | None:
    return None if value is None else int(value)


_SPECS: dict[type, dict[str, FieldSpec]] = {
    cls: {spec.name: spec for spec in config_fields(cls)} for cls in (TrainConfig, GenerateConfig)
}
