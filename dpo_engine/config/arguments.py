"""``argparse`` options derived from a config dataclass (``--max-prompt-length`` for ``max_prompt_length``), so
the command line, the Python API and ``--help`` can never disagree."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection
from typing import Any, Protocol, TypeVar, overload

from dpo_engine.config.fields import FieldSpec, config_fields
from dpo_engine.config.training import TrainConfig


class _Config(Protocol):
    def validate(self) -> None: ...


ConfigT = TypeVar("ConfigT", bound=_Config)


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type = TrainConfig,
    *,
    exclude: Collection[str] = (),
    only_given: bool = False,
) -> None:
    """Add one option per field of the config dataclass ``cls``, typed and documented from its metadata.

    ``exclude`` leaves fields out (a caller that sets them itself); with ``only_given`` an option the
    user did not type is absent from the parsed namespace, so a caller can pass on just the overrides.
    """
    for spec in config_fields(cls):
        if spec.name not in exclude:
            # A one-letter field also answers to its long form (-n and --n), as people type both.
            flags = [spec.flag, f"-{spec.flag}"] if len(spec.name) == 1 else [spec.flag]
            parser.add_argument(*flags, **_argument(spec, only_given=only_given))


@overload
def config_from_args(args: argparse.Namespace) -> TrainConfig: ...
@overload
def config_from_args(args: argparse.Namespace, cls: type[ConfigT]) -> ConfigT: ...
def config_from_args(args: argparse.Namespace, cls: type[Any] = TrainConfig) -> Any:
    """Build a validated ``cls`` (default :class:`TrainConfig`) from parsed options; absent ones keep defaults."""
    values = {spec.name: getattr(args, spec.name) for spec in config_fields(cls) if hasattr(args, spec.name)}
    config = cls(**values)
    config.validate()
    return config


def config_to_args(config: Any) -> list[str]:
    """The command-line options that :func:`config_from_args` turns back into ``config`` (a config dataclass).

    Fields at their default are left out. Every value is joined to its option (``--out=-dir``), so a value that
    starts with a dash is never read as an option; a list item cannot, and is refused.
    """
    args: list[str] = []
    for spec in config_fields(type(config)):
        value = getattr(config, spec.name)
        if not spec.required and value == spec.default:
            continue
        option = "--" + spec.name.replace("_", "-")  # a one-letter field answers to its long form too
        if spec.type is bool:
            args.append(option if value else f"--no-{option[2:]}")
        elif value is None:
            args.append(f"{option}=none")  # only optional scalars have a None that differs from their default
        elif spec.many:
            items = [str(item) for item in value]
            if not items or any(item.startswith("-") for item in items):
                raise ValueError(f"{option}: {value!r} cannot be written as command-line values")
            args += [option, *items]
        else:
            args.append(f"{option}={value}")
    return args


def _argument(spec: FieldSpec, *, only_given: bool) -> dict[str, Any]:
    bounds = spec.bounds_text()
    # argparse %-formats help text: a literal "10%" must reach it as "10%%".
    text = spec.help.replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": spec.name, "help": f"{text} Must be {bounds}." if bounds else text}
    if spec.required:
        kwargs["required"] = True
    else:
        kwargs["default"] = argparse.SUPPRESS if only_given else spec.default
        shown = "auto" if spec.auto and spec.default is None else spec.default
        kwargs["help"] += f" (default: {str(shown).replace('%', '%%')})"
    if spec.type is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    if spec.choices is not None:
        kwargs["choices"] = list(spec.choices)
    if spec.many:
        kwargs["nargs"] = "+"
        if spec.choices is not None:  # the help lists them; a repeated {a,b,...} would swamp the usage line
            kwargs["metavar"] = spec.name.upper()
    optional_scalar = spec.optional and not spec.many and spec.choices is None
    kwargs["type"] = _none_or(spec.type) if optional_scalar else spec.type
    return kwargs


def _none_or(tp: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that also accepts ``none`` (to switch off an optional limit such as --max-length, or to
    ask for the automatic choice, as ``auto`` does too)."""

    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "auto") else tp(text)

    parse.__name__ = getattr(tp, "__name__", "value")
    return parse
