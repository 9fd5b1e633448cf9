"""bar_chart: an SVG of one bar per count, labels escaped, a message when there is nothing to draw."""

from annotate.charts import bar_chart


def test_one_bar_per_count():
    svg = bar_chart(title="Judgements", bars=[("Mon", 3), ("Tue", 0), ("Wed", 7)])
    assert svg.count("<rect") == 3


def test_a_taller_count_draws_a_taller_bar():
    svg = bar_chart(title="Judgements", bars=[("a", 2), ("b", 8)])
    heights = [float(part.split('"')[0]) for part in svg.split('height="')[1:]]
    assert heights[0] < heights[1]


def test_labels_and_title_are_escaped():
    svg = bar_chart(title="<script>", bars=[("<b>", 1)])
    assert "<script>" not in svg
    assert "<b>" not in svg


def test_no_bars_says_so():
    svg = bar_chart(title="Judgements", bars=[])
    assert "No judgements yet" in svg
    assert "<rect" not in svg
