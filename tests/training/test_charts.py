"""Server-rendered SVG line charts: well-formed, one point per step, labels escaped."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

from training.charts import Series, format_number, legend, line_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def _points(path: ET.Element) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+),(-?[\d.]+)", path.get("d", ""))]


def test_the_chart_is_well_formed_svg() -> None:
    svg = ET.fromstring(line_chart(title="Loss", series=[Series("loss", [(1, 0.69), (2, 0.6), (3, 0.5)])]))
    assert svg.tag == f"{SVG}svg"
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == "Loss"


def test_a_path_has_one_point_per_step() -> None:
    steps = [(step, 1 / step) for step in range(1, 26)]
    svg = ET.fromstring(line_chart(title="Loss", series=[Series("loss", steps)]))
    paths = svg.findall(f".//{SVG}path")
    assert len(paths) == 1
    assert len(_points(paths[0])) == 25


def test_points_run_left_to_right_by_step_even_when_given_out_of_order() -> None:
    svg = ET.fromstring(line_chart(title="Loss", series=[Series("loss", [(3, 0.1), (1, 0.3), (2, 0.2)])]))
    xs = [x for x, _ in _points(svg.find(f".//{SVG}path"))]  # type: ignore[arg-type]
    assert xs == sorted(xs)
    assert len(set(xs)) == 3


def test_a_higher_value_is_drawn_higher_up() -> None:
    svg = ET.fromstring(line_chart(title="Accuracy", series=[Series("accuracy", [(1, 0.2), (2, 0.9)])]))
    (_, low_y), (_, high_y) = _points(svg.find(f".//{SVG}path"))  # type: ignore[arg-type]
    assert high_y < low_y  # SVG's y axis points down


def test_each_series_gets_its_own_path() -> None:
    series = [Series("chosen", [(1, 0.1), (2, 0.2)]), Series("rejected", [(1, -0.1), (2, -0.2)])]
    svg = ET.fromstring(line_chart(title="Rewards", series=series))
    groups = [g for g in svg.iter(f"{SVG}g") if g.get("data-label")]
    assert [g.get("data-label") for g in groups] == ["chosen", "rejected"]
    assert all(len(_points(g.find(f"{SVG}path"))) == 2 for g in groups)  # type: ignore[arg-type]


def test_labels_and_titles_are_escaped() -> None:
    hostile = '<script>alert("x")</script> & "quotes"'
    markup = line_chart(title=hostile, series=[Series(hostile, [(1, 1.0), (2, 2.0)])], x_label=hostile)
    assert "<script>" not in markup
    svg = ET.fromstring(markup)
    assert svg.get("aria-label") == hostile
    assert svg.find(f"{SVG}title").text == hostile  # type: ignore[union-attr]
    assert [g.get("data-label") for g in svg.iter(f"{SVG}g") if g.get("data-label")] == [hostile]


def test_no_data_says_so_instead_of_drawing() -> None:
    svg = ET.fromstring(line_chart(title="Loss", series=[Series("loss", [])]))
    assert svg.findall(f".//{SVG}path") == []
    assert "No data yet" in "".join(svg.itertext())


def test_non_finite_values_are_left_out() -> None:
    series = [Series("loss", [(1, 0.5), (2, math.nan), (3, math.inf), (4, 0.4)])]
    svg = ET.fromstring(line_chart(title="Loss", series=series))
    assert len(_points(svg.find(f".//{SVG}path"))) == 2  # type: ignore[arg-type]


def test_a_single_step_is_drawn_with_a_marker() -> None:
    svg = ET.fromstring(line_chart(title="Loss", series=[Series("loss", [(1, 0.69)])]))
    assert len(_points(svg.find(f".//{SVG}path"))) == 1  # type: ignore[arg-type]
    assert len(svg.findall(f".//{SVG}circle")) == 1


def test_a_fixed_range_keeps_its_bounds_as_ticks() -> None:
    svg = ET.fromstring(line_chart(title="Accuracy", series=[Series("a", [(1, 0.5), (2, 0.6)])], y_range=(0, 1)))
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[0] == "0"
    assert ticks[-1] == "1"


def test_ticks_are_round_and_cover_the_data() -> None:
    ticks = nice_ticks(0.013, 0.687)
    assert ticks[0] <= 0.013
    assert ticks[-1] >= 0.687
    assert ticks == [0.0, 0.2, 0.4, 0.6, 0.8]


def test_tiny_and_large_numbers_are_short() -> None:
    assert [format_number(v) for v in (0, 1e-6, 0.25, 12345.0)] == ["0", "1e-6", "0.25", "1.23e+4"]


def test_the_legend_names_only_the_series_drawn() -> None:
    series = [Series("chosen", [(1, 0.1)]), Series("empty", []), Series("rejected", [(1, 0.2)])]
    assert legend(series) == [("chosen", "series-a"), ("rejected", "series-b")]
