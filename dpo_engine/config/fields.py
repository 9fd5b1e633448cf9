"""One rule for every configuration field: its type, default, help, choices and bounds, read off the dataclass.

A config field declares ``metadata={"help": ..., "min": 0, "max": 5}``; ``"min_exclusive"``/``"max_exclusive"``
make a bound strict, ``"choices"`` lists the allowed values (a ``Literal`` type does the same) and ``"auto"``
marks a None default that the run resolves itself.
:func:`config_fields` turns a config class into :class:`FieldSpec` rows, from which the command line, the web
forms and the API schema are all derived, and :func:`check_values` is the one check every entry point runs.
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "text"}


class ConfigError(ValueError):
    """A setting of the wrong type, out of its declared bounds, or inconsistent with another; ``field`` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FieldSpec:
    """One configuration field, as a parser, a form or an API schema needs it."""

    name: str  # the dataclass field: "top_p"
    flag: str  # its command-line option: "--top-p" ("-n" for a one-letter name)
    type: type  # bool, int, float or str: the value's type, or each item's when ``many``
    help: str
    default: Any = None  # None when ``required``; list defaults are fresh copies
    required: bool = False  # no default: every caller gives it
    optional: bool = False  # None is a valid value (no limit, automatic choice)
    auto: bool = False  # None, the default, means "resolved when the run starts" (help and forms say "auto")
    many: bool = False  # a list of values
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False

    def check(self, value: Any, *, label: str | None = None) -> None:
        """Raise :class:`ConfigError`, naming ``label`` (default: the flag), unless ``value`` fits this field."""
        label = label or self.flag
        if value is None:
            if self.optional:
                return
            raise ConfigError(f"{label} needs a value", field=self.name)
        if self.many and not isinstance(value, list | tuple):
            raise ConfigError(f"{label} must be a list, got {value!r}", field=self.name)
        for item in value if self.many else [value]:
            self._check_item(item, label)

    def _check_item(self, item: Any, label: str) -> None:
        if not _has_type(item, self.type):
            raise ConfigError(f"{label} must be {_TYPE_WORDS[self.type]}, got {item!r}", field=self.name)
        if self.choices is not None and item not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ConfigError(f"{label} must be one of {allowed}, got {item!r}", field=self.name)
        if not self.in_bounds(item):
            raise ConfigError(f"{label} must be {self.bounds_text()}, got {item}", field=self.name)

    def in_bounds(self, value: float) -> bool:
        """Whether ``value`` lies within the declared bounds (always, for an unbounded field)."""
        above = self.min is None or (value > self.min if self.min_exclusive else value >= self.min)
        below = self.max is None or (value < self.max if self.max_exclusive else value <= self.max)
        return above and below

    def bounds_text(self) -> str:
        """The bounds in words: "in (0, 1]", "at least 1", "greater than 0", "at most 5"; "" when unbounded."""
        low, high = _number(self.min), _number(self.max)
        if self.min is not None and self.max is not None:
            return f"in {'(' if self.min_exclusive else '['}{low}, {high}{')' if self.max_exclusive else ']'}"
        if self.min is not None:
            return f"{'greater than' if self.min_exclusive else 'at least'} {low}"
        if self.max is not None:
            return f"{'less than' if self.max_exclusive else 'at most'} {high}"
        return ""


def config_fields(cls: type) -> list[FieldSpec]:
    """Every field of the config dataclass ``cls``, in declaration order, with its type, default, help and bounds."""
    hints = typing.get_type_hints(cls)
    return [_spec(cls, f, hints[f.name]) for f in dataclasses.fields(cls)]


def check_values(cls: type, values: Mapping[str, Any], *, by_name: bool = False) -> None:
    """Check ``values`` (any subset of ``cls``'s fields) against their declared types, choices and bounds.

    Errors name the command-line option (``--top-p must be in (0, 1], got 2``), or with ``by_name`` the Python
    name (``top_p must be ...``) for keyword-argument APIs; an unknown name is an error too.
    """
    specs = {spec.name: spec for spec in config_fields(cls)}
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            raise ConfigError(f"{cls.__name__} has no option {name!r}", field=name)
        spec.check(value, label=name if by_name else None)


def check_config(config: Any) -> None:
    """:func:`check_values` on every field of the config dataclass instance ``config``."""
    check_values(type(config), {f.name: getattr(config, f.name) for f in dataclasses.fields(config)})


def flag(name: str) -> str:
    """The command-line option of field ``name``: ``--max-new-tokens``, or ``-n`` for a one-letter name."""
    return f"-{name}" if len(name) == 1 else f"--{name.replace('_', '-')}"


def _spec(cls: type, f: dataclasses.Field[Any], hint: Any) -> FieldSpec:
    tp, optional = _unwrap_optional(hint)
    many = get_origin(tp) is list
    if many:
        tp = get_args(tp)[0]
    choices = f.metadata.get("choices")
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        tp = type(choices[0])
    if tp not in _TYPE_WORDS or "help" not in f.metadata:
        raise TypeError(f"{cls.__name__}.{f.name}: a config field needs help and a bool/int/float/str type")
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    meta = f.metadata
    return FieldSpec(
        name=f.name, flag=flag(f.name), type=tp, help=meta["help"], default=None if required else default,
        required=required, optional=optional, many=many, choices=tuple(choices) if choices is not None else None,
        min=meta.get("min"), max=meta.get("max"), min_exclusive=bool(meta.get("min_exclusive")),
        max_exclusive=bool(meta.get("max_exclusive")), auto=bool(meta.get("auto")),
    )


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _has_type(value: Any, tp: type) -> bool:
    # bool is an int subclass, but True is no batch size; numpy scalars register as numbers.Integral/Real.
    if tp is bool:
        return isinstance(value, bool)
    if tp is str:
        return isinstance(value, str | os.PathLike)  # paths may come as pathlib.Path
    if isinstance(value, bool):
        return False
    if tp is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real) and math.isfinite(value)
