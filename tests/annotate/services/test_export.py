import json
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate import services
from annotate.filters import JudgementFilter
from annotate.models import Judgement
from tests.annotate.factories import ComparisonFactory, StaffFactory, UserFactory
from tests.annotate.services._helpers import PAIRS, import_pairs, judge

pytestmark = pytest.mark.django_db


def _export_rows(tmp_path, **kwargs):
    path = tmp_path / "out.jsonl"
    result = services.export_preferences(path=path, fmt="jsonl", **kwargs)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert result.rows == len(rows)
    return rows


def test_export_writes_the_majority_winner_as_chosen(tmp_path):
    comparison = ComparisonFactory(target_judgements=3)
    for choice in ("left", "left", "right"):
        judge(UserFactory(), comparison, choice)
    (row,) = _export_rows(tmp_path)
    assert row["chosen"] == comparison.completion_a.text
    assert row["rejected"] == comparison.completion_b.text
    assert (row["num_judgements"], round(row["agreement"], 3)) == (3, 0.667)


def test_export_drops_ties_and_both_bad(tmp_path):
    for choice in ("tie", "both_bad"):
        judge(UserFactory(), ComparisonFactory(), choice)
    assert _export_rows(tmp_path) == []


def test_export_min_agreement_filters_split_votes(tmp_path):
    comparison = ComparisonFactory(target_judgements=3)
    for choice in ("left", "left", "right"):
        judge(UserFactory(), comparison, choice)
    assert _export_rows(tmp_path, judgement_filter=JudgementFilter(min_agreement=0.9)) == []


def test_export_excludes_named_annotators(tmp_path):
    comparison = ComparisonFactory(target_judgements=3)
    judge(UserFactory(username="spammer"), comparison, "right")
    judge(UserFactory(), comparison, "left")
    (row,) = _export_rows(tmp_path, judgement_filter=JudgementFilter(exclude_annotators=("spammer",)))
    assert (row["chosen"], row["num_judgements"]) == (comparison.completion_a.text, 1)


def test_export_since_ignores_older_judgements(tmp_path):
    judge(UserFactory(), ComparisonFactory())
    later = JudgementFilter(since=timezone.now() + timedelta(minutes=1))
    assert _export_rows(tmp_path, judgement_filter=later) == []


def test_conversational_export_uses_message_lists(tmp_path, write_jsonl):
    import_pairs(write_jsonl(PAIRS), judged=True)
    rows = _export_rows(tmp_path, conversational=True)
    assert rows[1]["prompt"][0] == {"role": "system", "content": "Be terse."}
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "Paris."}]


def test_standard_export_leaves_out_multi_message_prompts(tmp_path, write_jsonl):
    import_pairs(write_jsonl(PAIRS), judged=True)
    result = services.export_preferences(path=tmp_path / "o.jsonl", fmt="jsonl")
    assert (result.rows, result.skipped_multi_turn) == (1, 1)


def test_parquet_and_hf_exports_load_with_datasets(tmp_path, write_jsonl):
    import datasets

    import_pairs(write_jsonl(PAIRS), judged=True)
    services.export_preferences(path=tmp_path / "o.parquet", fmt="parquet", conversational=True)
    services.export_preferences(path=tmp_path / "hf", fmt="hf", conversational=True)
    from_parquet = datasets.Dataset.from_parquet(str(tmp_path / "o.parquet"), cache_dir=str(tmp_path / "c"))
    from_disk = datasets.load_from_disk(str(tmp_path / "hf"))
    assert from_parquet["chosen"] == from_disk["chosen"]
    assert len(from_disk) == 2


# The ids an export reports: what a training run records as its frozen data ----------------


def test_export_reports_the_comparisons_and_judgements_of_its_rows(tmp_path):
    decided, split = ComparisonFactory(target_judgements=2), ComparisonFactory(target_judgements=2)
    votes = [judge(UserFactory(), decided, "left"), judge(UserFactory(), decided, "left")]
    judge(UserFactory(), split, "left")
    judge(UserFactory(), split, "right")
    result = services.export_preferences(path=tmp_path / "o.jsonl", fmt="jsonl")
    assert (result.comparison_ids, result.judgement_ids) == ((decided.id,), tuple(v.id for v in votes))


def test_export_judgement_ids_leave_out_a_file_excluded_as_a_source(tmp_path, write_jsonl):
    import_pairs(write_jsonl(PAIRS[:1], name="gold.jsonl"), judged=True, target_judgements=2)
    comparison = Judgement.objects.get(source="gold.jsonl").comparison
    person = judge(UserFactory(), comparison, "left")
    result = services.export_preferences(
        path=tmp_path / "o.jsonl", fmt="jsonl", judgement_filter=JudgementFilter.from_inputs(exclude="gold.jsonl")
    )
    assert result.judgement_ids == (person.id,)


def test_export_judgement_ids_leave_out_rows_it_did_not_write(tmp_path, write_jsonl):
    import_pairs(write_jsonl(PAIRS), judged=True)
    single_turn = Judgement.objects.get(comparison__prompt__external_id="p1")
    result = services.export_preferences(path=tmp_path / "o.jsonl", fmt="jsonl")
    assert result.judgement_ids == (single_turn.id,)


# An export that matches nothing: a valid file with no rows, in every format ----------------


def test_an_empty_jsonl_export_is_an_empty_file(tmp_path):
    result = services.export_preferences(path=tmp_path / "o.jsonl", fmt="jsonl")
    assert result.rows == 0
    assert (tmp_path / "o.jsonl").read_text() == ""


@pytest.mark.parametrize("conversational", [False, True])
def test_an_empty_parquet_export_has_the_columns_and_no_rows(tmp_path, conversational):
    import pyarrow.parquet as pq

    services.export_preferences(path=tmp_path / "o.parquet", fmt="parquet", conversational=conversational)
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.num_rows == 0
    assert {"prompt", "chosen", "rejected"} <= set(table.column_names)


@pytest.mark.parametrize("conversational", [False, True])
def test_an_empty_hf_export_loads_with_the_columns_and_no_rows(tmp_path, conversational):
    import datasets

    services.export_preferences(path=tmp_path / "hf", fmt="hf", conversational=conversational)
    dataset = datasets.load_from_disk(str(tmp_path / "hf"))
    assert len(dataset) == 0
    assert {"prompt", "chosen", "rejected"} <= set(dataset.column_names)


def test_an_export_whose_filter_leaves_nothing_is_empty_in_hf_too(tmp_path, write_jsonl):
    import datasets

    import_pairs(write_jsonl(PAIRS), judged=True)
    later = JudgementFilter(since=timezone.now() + timedelta(days=1))
    result = services.export_preferences(path=tmp_path / "hf", fmt="hf", judgement_filter=later)
    assert result.rows == 0
    assert len(datasets.load_from_disk(str(tmp_path / "hf"))) == 0


# Adjudication ---------------------------------------------------------------------------


def _split_two_to_one():
    """Completion A wins two votes to one."""
    comparison = ComparisonFactory(target_judgements=3)
    for choice in ("left", "left", "right"):
        judge(UserFactory(), comparison, choice)
    return comparison


def test_an_adjudicated_winner_overrides_the_majority_and_says_so(tmp_path):
    comparison = _split_two_to_one()
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="b", by=StaffFactory())
    (row,) = _export_rows(tmp_path)
    assert (row["chosen"], row["rejected"]) == (comparison.completion_b.text, comparison.completion_a.text)
    assert row["adjudicated"] is True
    assert round(row["agreement"], 3) == 0.333


def test_a_row_decided_by_its_votes_is_not_adjudicated(tmp_path):
    _split_two_to_one()
    (row,) = _export_rows(tmp_path)
    assert row["adjudicated"] is False


@pytest.mark.parametrize("outcome", ["tie", "both_bad"])
def test_an_adjudicated_tie_or_both_bad_drops_the_row(tmp_path, outcome):
    comparison = _split_two_to_one()
    services.comparison_adjudicate(comparison_id=comparison.id, outcome=outcome, by=StaffFactory())
    assert _export_rows(tmp_path) == []


def test_an_adjudicated_winner_is_a_row_even_below_min_agreement(tmp_path):
    comparison = ComparisonFactory(target_judgements=2)
    judge(UserFactory(), comparison, "left")
    judge(UserFactory(), comparison, "right")
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="a", by=StaffFactory())
    (row,) = _export_rows(tmp_path, judgement_filter=JudgementFilter(min_agreement=0.9))
    assert (row["chosen"], row["adjudicated"]) == (comparison.completion_a.text, True)


def test_an_adjudicated_row_reports_its_comparison_and_all_its_judgements(tmp_path):
    comparison = ComparisonFactory(target_judgements=2)
    judge(UserFactory(), comparison, "left")
    judge(UserFactory(), comparison, "right")
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="a", by=StaffFactory())
    result = services.export_preferences(path=tmp_path / "o.jsonl", fmt="jsonl")
    assert result.comparison_ids == (comparison.id,)
    assert sorted(result.judgement_ids) == sorted(comparison.judgements.values_list("id", flat=True))


@pytest.mark.parametrize("fmt", ["parquet", "hf"])
def test_parquet_and_hf_exports_have_the_adjudicated_column(tmp_path, fmt):
    import datasets

    comparison = _split_two_to_one()
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="b", by=StaffFactory())
    services.export_preferences(path=tmp_path / "out", fmt=fmt)
    if fmt == "hf":
        dataset = datasets.load_from_disk(str(tmp_path / "out"))
    else:
        dataset = datasets.Dataset.from_parquet(str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))
    assert dataset.features["adjudicated"].dtype == "bool"
    assert dataset["adjudicated"] == [True]
