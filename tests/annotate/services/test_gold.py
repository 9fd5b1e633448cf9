"""Marking gold items: by hand, in bulk, by a gold import, and from an adjudication."""

import pytest

from annotate import services
from annotate.formats import ImportFileError
from annotate.limits import GOLD_TARGET_JUDGEMENTS
from annotate.models import AuditAction, AuditEntry, Comparison
from tests.annotate.factories import ComparisonFactory, StaffFactory
from tests.annotate.services._helpers import PAIRS, import_pairs

pytestmark = pytest.mark.django_db


def test_marking_sets_the_expected_outcome_and_opens_the_item_to_everyone():
    comparison = ComparisonFactory(target_judgements=3)
    services.comparison_gold_mark(comparison=comparison, outcome="b", actor=StaffFactory())
    comparison.refresh_from_db()
    assert (comparison.gold_outcome, comparison.target_judgements) == ("b", GOLD_TARGET_JUDGEMENTS)


def test_marking_leaves_an_audit_line_with_the_previous_outcome():
    comparison, staff = ComparisonFactory(), StaffFactory()
    services.comparison_gold_mark(comparison=comparison, outcome="a", actor=staff)
    services.comparison_gold_mark(comparison=comparison, outcome="tie", actor=staff)
    lines = AuditEntry.objects.filter(action=AuditAction.GOLD_MARK).order_by("id")
    assert [(e.target_id, e.detail["outcome"], e.detail["previous"]) for e in lines] == [
        (str(comparison.id), "a", ""),
        (str(comparison.id), "tie", "a"),
    ]


def test_a_side_is_no_gold_outcome():
    comparison = ComparisonFactory()
    with pytest.raises(services.GoldInvalid, match="outcome"):
        services.comparison_gold_mark(comparison=comparison, outcome="left", actor=None)
    comparison.refresh_from_db()
    assert comparison.gold_outcome == ""


def test_bulk_marking_checks_every_outcome_before_writing():
    first, second = ComparisonFactory(), ComparisonFactory()
    with pytest.raises(services.GoldInvalid):
        services.comparisons_gold_mark(outcomes={first.id: "a", second.id: "left"}, source="gold.jsonl")
    assert not Comparison.objects.exclude(gold_outcome="").exists()


def test_bulk_marking_marks_each_and_writes_one_audit_line():
    first, second = ComparisonFactory(), ComparisonFactory()
    marked = services.comparisons_gold_mark(outcomes={first.id: "a", second.id: "both_bad"}, source="gold.jsonl")
    assert marked == 2
    assert dict(Comparison.objects.values_list("id", "gold_outcome")) == {first.id: "a", second.id: "both_bad"}
    assert AuditEntry.objects.filter(action=AuditAction.GOLD_MARK).count() == 1


def _chosen_won(comparison):
    """The expected outcome a gold import should give: the side holding the file's chosen text."""
    return "a" if comparison.completion_a.text in {"4", "Paris."} else "b"


def test_a_gold_import_expects_each_pairs_chosen_side(write_jsonl):
    import_pairs(write_jsonl(PAIRS), gold=True)
    comparisons = list(Comparison.objects.select_related("completion_a"))
    assert len(comparisons) == 2
    assert [c.gold_outcome for c in comparisons] == [_chosen_won(c) for c in comparisons]
    assert {c.target_judgements for c in comparisons} == {GOLD_TARGET_JUDGEMENTS}


def test_a_gold_import_reads_an_existing_pair_the_way_round_it_was_stored(write_jsonl):
    swapped = [{**PAIRS[0], "chosen": PAIRS[0]["rejected"], "rejected": PAIRS[0]["chosen"]}]
    import_pairs(write_jsonl(swapped, name="first.jsonl"))
    import_pairs(write_jsonl(PAIRS[:1], name="gold.jsonl"), gold=True)
    comparison = Comparison.objects.select_related("completion_a").get()
    assert comparison.gold_outcome == ("a" if comparison.completion_a.text == "4" else "b")


def test_a_row_marked_tie_is_a_tie_gold_item(write_jsonl):
    import_pairs(write_jsonl([{**PAIRS[0], "tie": True}]), gold=True)
    assert Comparison.objects.get().gold_outcome == "tie"


def test_a_bad_tie_value_rolls_the_whole_gold_import_back(write_jsonl):
    with pytest.raises(ImportFileError, match="tie"):
        import_pairs(write_jsonl([PAIRS[0], {**PAIRS[1], "tie": "yes"}]), gold=True)
    assert not Comparison.objects.exists()


def test_a_gold_file_cannot_also_be_imported_judged(write_jsonl):
    with pytest.raises(ImportFileError, match="gold"):
        import_pairs(write_jsonl(PAIRS), gold=True, judged=True)
    assert not Comparison.objects.exists()


def test_an_ordinary_import_marks_nothing_gold(write_jsonl):
    import_pairs(write_jsonl([{**PAIRS[0], "tie": True}]))
    assert Comparison.objects.get().gold_outcome == ""


def test_an_adjudication_can_make_its_outcome_the_gold_answer():
    comparison = ComparisonFactory()
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="b", by=StaffFactory(), gold=True)
    comparison.refresh_from_db()
    assert (comparison.adjudicated_outcome, comparison.gold_outcome) == ("b", "b")


def test_an_adjudication_without_gold_leaves_the_comparison_ordinary():
    comparison = ComparisonFactory()
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="b", by=StaffFactory())
    comparison.refresh_from_db()
    assert comparison.gold_outcome == ""
