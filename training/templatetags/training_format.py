"""Number and duration formats of the training pages."""

from __future__ import annotations

from django import template

from training.charts import format_number

register = template.Library()
UNKNOWN = "\N{EN DASH}"


@register.filter
def duration(seconds: float | None) -> str:
    """12 s, 3 min 05 s, 2 h 07 min; an en dash when unknown."""
    if seconds is None:
        return UNKNOWN
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@register.filter
def percent(value: float | None, digits: int = 0) -> str:
    """A share 0..1 as a percentage; an en dash when unknown."""
    if value is None:
        return UNKNOWN
    return f"{100 * value:.{int(digits)}f}%"


@register.filter
def number(value: float | int | None) -> str:
    """Metric values and hyper-parameters, short: 1e-06, 0.693, 64."""
    if value is None:
        return UNKNOWN
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return format_number(value)


@register.filter
def setting(value: object) -> str:
    """A hyper-parameter's value as the CLI would take it (lists joined, None as 'none')."""
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return format_number(value)
    return str(value)


@register.filter
def get_item(mapping: dict[str, object] | None, key: str) -> object:
    """``mapping[key]``, or None: for dicts whose keys are not identifiers (``rewards/margins``)."""
    return (mapping or {}).get(key)
