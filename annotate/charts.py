"""A server-rendered SVG bar chart (judgements over time): no JavaScript, no inline CSS, no CDN.

Presentation attributes and ``duet.css`` classes only, so pages keep their strict
Content-Security-Policy; every label is escaped. ``annotate`` may not import ``training.charts``,
and a count per period reads better as bars than as a line anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
HEIGHT = 200
MARGIN_LEFT = 44  # fits a four-digit count
MARGIN_RIGHT = 8
MARGIN_TOP = 12
MARGIN_BOTTOM = 36  # the x labels, then the axis title
# Bar labels shown along the x axis: more would overlap at 12px.
X_LABELS = 5
BAR_GAP = 0.15  # share of a slot left empty between bars


def _count_ticks(highest: int) -> list[int]:
    """Whole-number ticks from 0 covering ``highest``: 1, 2 or 5 times a power of ten apart."""
    if highest <= 0:
        return [0, 1]
    raw = highest / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return list(range(0, math.ceil(highest / step) * step + 1, step))


def bar_chart(*, title: str, bars: Sequence[tuple[str, int]], x_label: str = "") -> SafeString:
    """An accessible ``<svg>`` of one bar per (label, count), in the order given."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
    ]
    if not bars:
        parts.append(
            f'<text class="chart-empty" x="{WIDTH / 2:.1f}" y="{HEIGHT / 2:.1f}" text-anchor="middle">'
            "No judgements yet</text></svg>"
        )
        return mark_safe("".join(parts))  # noqa: S308 - built from escaped parts only
    ticks = _count_ticks(max(count for _, count in bars))
    plot_w, plot_h = WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    bottom = MARGIN_TOP + plot_h

    def y_of(value: float) -> float:
        return bottom - plot_h * value / ticks[-1]

    right = WIDTH - MARGIN_RIGHT
    parts.append('<g class="chart-grid">')
    parts += [f'<line x1="{MARGIN_LEFT}" x2="{right}" y1="{y_of(t):.1f}" y2="{y_of(t):.1f}"/>' for t in ticks]
    parts.append("</g>")
    parts += [
        f'<text class="chart-tick" x="{MARGIN_LEFT - 6}" y="{y_of(tick) + 4:.1f}" text-anchor="end">{tick}</text>'
        for tick in ticks
    ]
    slot = plot_w / len(bars)
    every = max(1, math.ceil(len(bars) / X_LABELS))
    parts.append('<g class="chart-bars">')
    for i, (label, count) in enumerate(bars):
        x = MARGIN_LEFT + i * slot + slot * BAR_GAP / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{y_of(count):.1f}" width="{slot * (1 - BAR_GAP):.1f}" '
            f'height="{bottom - y_of(count):.1f}"><title>{escape(label)}: {count}</title></rect>'
        )
    parts.append("</g>")
    parts += [
        f'<text class="chart-tick" x="{MARGIN_LEFT + (i + 0.5) * slot:.1f}" y="{bottom + 14}" '
        f'text-anchor="middle">{escape(label)}</text>'
        for i, (label, _) in enumerate(bars)
        if i % every == 0
    ]
    parts.append(f'<line class="chart-axis" x1="{MARGIN_LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}"/>')
    if x_label:
        parts.append(
            f'<text class="chart-label" x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" '
            f'text-anchor="middle">{escape(x_label)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built from escaped parts only
