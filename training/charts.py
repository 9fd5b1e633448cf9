"""Server-rendered SVG line charts of a run's metrics: no JavaScript, no inline CSS.

The markup uses presentation attributes and classes from ``duet.css`` only, so the pages keep their
strict Content-Security-Policy; every label is escaped, since metric names come from stored data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 480
HEIGHT = 220
MARGIN_LEFT = 50  # fits the widest y tick label, e.g. "-1.23e+4"
MARGIN_RIGHT = 16  # keeps the last point's marker inside the box
MARGIN_TOP = 16  # keeps the top tick label inside the box
MARGIN_BOTTOM = 38  # two text lines: the x tick labels, then the axis title
PALETTE = ("series-a", "series-b", "series-c", "series-d")
# Pixel offsets of the text, tuned for duet.css's 12px chart font (.chart-tick, .chart-label).
TICK_GAP = 6  # room between a y tick label and the plot area
TEXT_BASELINE_SHIFT = 4  # about a third of the font, so a y label centres on its grid line
X_TICK_DROP = 16  # x tick labels sit one line below the axis
X_LABEL_RAISE = 6  # the x axis title sits this far above the chart's bottom edge
MARKER_RADIUS = 3  # the last point's dot: visible, yet small next to a 480px-wide chart
X_TICK_COUNT = 6  # a step axis reads well with one more tick than the value axis' default


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (step, value) pairs, in any order; non-finite values are left out."""

    label: str
    points: Sequence[tuple[float, float]]


def _finite(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return sorted((float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering ``low``..``high``."""
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def format_number(value: float) -> str:
    """Short tick and value labels: 0.0012 → 1.2e-3, 12345 → 1.23e+4, 0.25 → 0.25."""
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent):+d}"
    return f"{value:.3g}"


def line_chart(
    *,
    title: str,
    series: Sequence[Series],
    x_label: str = "step",
    y_range: tuple[float, float] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> SafeString:
    """An accessible ``<svg>`` line chart: one path per series with one point per x value.

    ``y_range`` fixes the y axis (e.g. 0..1 for accuracies); otherwise it fits the data.
    """
    lines = [(s.label, _finite(s.points)) for s in series]
    plotted = [(label, points) for label, points in lines if points]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
    ]
    if not plotted:
        parts.append(
            f'<text class="chart-empty" x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">'
            "No data yet</text></svg>"
        )
        return mark_safe("".join(parts))  # noqa: S308 - built from escaped parts only
    plane = _Plane.fit(plotted, y_range, width, height)
    parts += _axes(plane, x_label)
    parts += [_series_group(plane, index, label, points) for index, (label, points) in enumerate(plotted)]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built from escaped parts only


@dataclass(frozen=True)
class _Plane:
    """The data's ranges and the plot area's pixel box: maps (step, value) to SVG coordinates."""

    x_low: float
    x_high: float
    y_ticks: list[float]
    width: int
    height: int

    @classmethod
    def fit(
        cls,
        plotted: Sequence[tuple[str, list[tuple[float, float]]]],
        y_range: tuple[float, float] | None,
        width: int,
        height: int,
    ) -> _Plane:
        xs = [x for _, points in plotted for x, _ in points]
        ys = [y for _, points in plotted for _, y in points]
        x_low, x_high = min(xs), max(xs)
        if x_high == x_low:
            # One step would make a zero-width axis: widen it by a step each way.
            x_low, x_high = x_low - 1, x_high + 1
        y_ticks = nice_ticks(*(y_range or (min(ys), max(ys))))
        return cls(x_low, x_high, y_ticks, width, height)

    @property
    def left(self) -> int:
        return MARGIN_LEFT

    @property
    def right(self) -> int:
        return self.width - MARGIN_RIGHT

    @property
    def top(self) -> int:
        return MARGIN_TOP

    @property
    def bottom(self) -> int:
        return self.height - MARGIN_BOTTOM

    def sx(self, x: float) -> float:
        return self.left + (x - self.x_low) / (self.x_high - self.x_low) * (self.right - self.left)

    def sy(self, y: float) -> float:
        y_low, y_high = self.y_ticks[0], self.y_ticks[-1]
        return self.bottom - (y - y_low) / (y_high - y_low) * (self.bottom - self.top)


def _axes(plane: _Plane, x_label: str) -> list[str]:
    """Horizontal grid lines with y tick labels, x tick labels, the x axis and its label."""
    left, right, bottom = plane.left, plane.right, plane.bottom
    parts = ['<g class="chart-grid">']
    for tick in plane.y_ticks:
        y = plane.sy(tick)
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="chart-tick" x="{left - TICK_GAP}" y="{y + TEXT_BASELINE_SHIFT:.1f}" text-anchor="end">'
            f"{escape(format_number(tick))}</text>"
        )
    for tick in _x_ticks(plane.x_low, plane.x_high):
        x = plane.sx(tick)
        parts.append(
            f'<text class="chart-tick" x="{x:.1f}" y="{bottom + X_TICK_DROP}" text-anchor="middle">'
            f"{escape(format_number(tick))}</text>"
        )
    parts.append("</g>")
    parts.append(f'<line class="chart-axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>')
    parts.append(
        f'<text class="chart-label" x="{(left + right) / 2:.1f}" y="{plane.height - X_LABEL_RAISE}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    return parts


def _series_group(plane: _Plane, index: int, label: str, points: list[tuple[float, float]]) -> str:
    """One series' path, with a marker and a tooltip on its last point."""
    css = PALETTE[index % len(PALETTE)]
    d = " ".join(f"{'M' if i == 0 else 'L'}{plane.sx(x):.1f},{plane.sy(y):.1f}" for i, (x, y) in enumerate(points))
    last_x, last_y = points[-1]
    return (
        f'<g class="chart-series {css}" data-label="{escape(label)}">'
        f'<path d="{d}" fill="none"><title>{escape(label)}</title></path>'
        f'<circle cx="{plane.sx(last_x):.1f}" cy="{plane.sy(last_y):.1f}" r="{MARKER_RADIUS}">'
        f"<title>{escape(label)} at {escape(format_number(last_x))}: {escape(format_number(last_y))}</title>"
        "</circle></g>"
    )


def _x_ticks(low: float, high: float) -> list[float]:
    """Whole-number ticks within the data's steps (steps are integers)."""
    ticks = [t for t in nice_ticks(low, high, X_TICK_COUNT) if low <= t <= high]
    whole = sorted({float(round(t)) for t in ticks})
    return whole or [low, high]


def legend(series: Sequence[Series]) -> list[tuple[str, str]]:
    """(label, css class) of each plotted series, in the colours ``line_chart`` gives them."""
    plotted = [s.label for s in series if _finite(s.points)]
    return [(label, PALETTE[i % len(PALETTE)]) for i, label in enumerate(plotted)]
