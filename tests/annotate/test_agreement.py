import krippendorff
import numpy as np
import pytest

from annotate import agreement
from annotate.agreement import AnnotatorReliability, ReliabilityTally, Vote

# Four annotators over twelve comparisons, None where one did not judge it: some agreement, some not.
NOMINAL_DATA = [
    ["a", "a", "b", "tie", "a", None, "b", "both_bad", "a", "b", "tie", "a"],
    ["a", "b", "b", "tie", None, "a", "b", "both_bad", "a", "a", "tie", None],
    [None, "a", "b", "a", "a", "a", "tie", "both_bad", "b", "b", None, "a"],
    ["a", "a", None, "tie", "b", "a", "b", "tie", "a", "b", "tie", "both_bad"],
]
ORDINAL_DATA = [
    [3, 2, -1, 0, 1, None, -3, -2, 2, -1, 0, 3],
    [3, 1, -1, 0, None, 2, -2, -2, 1, 1, 0, None],
    [None, 2, -2, 1, 1, 2, 0, -3, -1, -1, None, 2],
    [2, 2, None, 0, -1, 3, -3, -1, 2, -2, 1, 3],
]


def _counts(data, level):
    units = [[row[unit] for row in data] for unit in range(len(data[0]))]
    return agreement.value_counts(units, level=level)


def _package_alpha(data, level):
    domain = agreement.VALUES[level]
    index = {value: i for i, value in enumerate(domain)}
    coded = np.array([[np.nan if v is None else index[v] for v in row] for row in data], dtype=float)
    return krippendorff.alpha(
        reliability_data=coded, level_of_measurement=level, value_domain=list(range(len(domain)))
    )


def test_nominal_alpha_equals_the_krippendorff_package():
    ours = agreement.alpha(_counts(NOMINAL_DATA, "nominal"), level="nominal")
    assert ours == pytest.approx(_package_alpha(NOMINAL_DATA, "nominal"), abs=1e-9)


def test_ordinal_alpha_equals_the_krippendorff_package():
    ours = agreement.alpha(_counts(ORDINAL_DATA, "ordinal"), level="ordinal")
    assert ours == pytest.approx(_package_alpha(ORDINAL_DATA, "ordinal"), abs=1e-9)


def test_ordinal_alpha_differs_from_nominal_on_the_same_codes():
    """The ordinal distance is in use: near misses (+2 against +3) cost less than far ones."""
    data = [[3, 2, -3, 0, 1, -1], [2, 3, -2, 0, 1, -1], [3, 3, -3, 1, 0, -2]]
    counts = _counts(data, "ordinal")
    nominal = agreement.alpha(counts, level="nominal")
    assert agreement.alpha(counts, level="ordinal") > nominal


def test_a_random_clicker_lowers_alpha():
    rng = np.random.default_rng(7)
    truth = [agreement.NOMINAL_VALUES[i % 4] for i in range(40)]
    careful = [list(truth), list(truth), [v if i % 10 else "tie" for i, v in enumerate(truth)]]
    clicker = [agreement.NOMINAL_VALUES[i] for i in rng.integers(0, 4, size=40)]
    without = agreement.alpha(_counts(careful, "nominal"), level="nominal")
    with_clicker = agreement.alpha(_counts([*careful, clicker], "nominal"), level="nominal")
    assert with_clicker < without - 0.1


def test_alpha_is_none_without_variation():
    assert agreement.alpha(_counts([["a", "a"], ["a", "a"]], "nominal"), level="nominal") is None


def test_alpha_interval_brackets_alpha():
    counts = _counts(NOMINAL_DATA, "nominal")
    low, high = agreement.alpha_interval(counts, level="nominal")
    assert low < agreement.alpha(counts, level="nominal") < high


def test_alpha_interval_matches_resampling_comparisons_one_by_one():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, size=80)
    noisy = [[v if rng.random() < 0.7 else rng.integers(0, 4) for v in truth] for _ in range(3)]
    counts = _counts([[agreement.NOMINAL_VALUES[v] for v in row] for row in noisy], "nominal")
    draws = [rng.integers(0, len(counts), size=len(counts)) for _ in range(agreement.BOOTSTRAP_RESAMPLES)]
    naive = np.percentile([agreement.alpha(counts[draw], level="nominal") for draw in draws], [2.5, 97.5])
    assert agreement.alpha_interval(counts, level="nominal") == pytest.approx(tuple(naive), abs=0.03)


def test_alpha_interval_is_the_same_on_every_call():
    counts = _counts(ORDINAL_DATA, "ordinal")
    assert agreement.alpha_interval(counts, level="ordinal") == agreement.alpha_interval(counts, level="ordinal")


def test_nominal_value_names_the_completion_not_the_side():
    as_left = agreement.nominal_value(choice="left", winner_id=10, completion_a_id=10)
    as_right = agreement.nominal_value(choice="right", winner_id=10, completion_a_id=10)
    assert (as_left, as_right) == ("a", "a")


def test_ordinal_value_is_signed_by_completion_and_strength():
    much_b = agreement.ordinal_value(choice="left", strength="much", winner_id=11, completion_a_id=10)
    slightly_a = agreement.ordinal_value(choice="right", strength="slightly", winner_id=10, completion_a_id=10)
    assert (much_b, slightly_a) == (-3, 1)


def test_ordinal_value_leaves_both_bad_and_unrated_sides_out():
    both_bad = agreement.ordinal_value(choice="both_bad", strength="", winner_id=None, completion_a_id=10)
    unrated = agreement.ordinal_value(choice="left", strength="", winner_id=10, completion_a_id=10)
    assert (both_bad, unrated) == (None, None)


def test_kappa_on_a_known_table():
    # Rows: first rater yes/no; columns: second. p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5.
    table = {("yes", "yes"): 20, ("yes", "no"): 5, ("no", "yes"): 10, ("no", "no"): 15}
    pairs = [pair for pair, n in table.items() for _ in range(n)]
    assert agreement.cohen_kappa(pairs) == pytest.approx(0.4)


def test_kappa_is_none_when_chance_agrees_every_time():
    assert agreement.cohen_kappa([("a", "a"), ("a", "a")]) is None


def test_wilson_interval_of_eight_in_ten():
    low, high = agreement.wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))


def _tally(*units):
    tally = ReliabilityTally()
    for unit in units:
        tally.add(unit)
    return tally


def _row(tally, username, *, rushed_seconds=3.0):
    return next(r for r in tally.result(rushed_seconds=rushed_seconds).annotators if r.username == username)


def test_left_share_counts_side_picks_only_with_its_wilson_interval():
    votes = [[Vote("ann", "a", None, "left")] for _ in range(8)]
    votes += [[Vote("ann", "b", None, "right")] for _ in range(2)]
    votes += [[Vote("ann", "tie", 0, "tie")] for _ in range(5)]
    row = _row(_tally(*votes), "ann")
    assert (row.left_share, row.left_share_interval) == (0.8, agreement.wilson_interval(8, 10))


def test_agreement_is_the_share_of_pairs_alike():
    unit = [Vote("ann", "a", None, "left"), Vote("bob", "a", None, "left"), Vote("cat", "b", None, "left")]
    row = _row(_tally(unit), "ann")
    assert row.agreement == 0.5


def test_kappa_is_against_the_majority_of_the_others():
    units = [
        [Vote("ann", "a", None, "left"), Vote("bob", "a", None, "left"), Vote("cat", "a", None, "left")],
        [Vote("ann", "b", None, "left"), Vote("bob", "b", None, "left"), Vote("cat", "a", None, "left")],
        [Vote("ann", "a", None, "left"), Vote("bob", "b", None, "left"), Vote("cat", "b", None, "left")],
    ]
    # ann against the others' majority: (a, a), (b, none: bob and cat split), (a, b).
    assert _row(_tally(*units), "ann").kappa == agreement.cohen_kappa([("a", "a"), ("a", "b")])


def test_rushed_counts_votes_faster_than_the_threshold():
    units = [[Vote("ann", "a", None, "left", seconds)] for seconds in (1.0, 2.9, 3.0, 40.0)]
    assert _row(_tally(*units), "ann", rushed_seconds=3.0).rushed == 2


def test_median_seconds_leaves_votes_without_a_lease_out():
    units = [[Vote("ann", "a", None, "left", seconds)] for seconds in (5.0, None, 9.0, 20.0)]
    assert _row(_tally(*units), "ann").median_seconds == 9.0


def _reliability(username, kappa):
    return AnnotatorReliability(username, 1, None, kappa, None, None, None, 0)


def test_annotators_sorted_descending_with_blanks_last():
    rows = [_reliability("ann", 0.2), _reliability("bob", None), _reliability("cat", 0.9)]
    assert [r.username for r in agreement.annotators_sorted(rows, "-kappa")] == ["cat", "ann", "bob"]


def test_annotators_sorted_by_an_unknown_column_falls_back_to_the_default():
    rows = [_reliability("bob", 0.2), _reliability("ann", 0.9)]
    assert agreement.annotators_sorted(rows, "password") == agreement.annotators_sorted(rows, agreement.DEFAULT_SORT)


def test_csv_row_matches_the_header():
    row = AnnotatorReliability("ann", 3, 0.5, 0.1, 0.6, (0.2, 0.9), 4.5, 1)
    assert dict(zip(agreement.CSV_HEADER, row.csv_row(), strict=True)) == {
        "username": "ann",
        "judgements": 3,
        "agreement": 0.5,
        "kappa": 0.1,
        "left_share": 0.6,
        "left_share_low": 0.2,
        "left_share_high": 0.9,
        "median_seconds": 4.5,
        "rushed": 1,
    }
