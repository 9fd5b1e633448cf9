import json
from datetime import timedelta

import pytest
from django.utils import timezone

from annotate import services
from annotate.formats import ImportFileError
from annotate.models import Assignment, Comparison, Completion, Judgement, Prompt
from tests.annotate.factories import ComparisonFactory, UserFactory

pytestmark = pytest.mark.django_db

PAIRS = [
    {"id": "p1", "prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "tags": ["math"]},
    {
        "prompt": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?"}],
        "chosen": [{"role": "assistant", "content": "Paris."}],
        "rejected": [{"role": "assistant", "content": "Lyon."}],
    },
]


def _import_pairs(path, **kwargs):
    with path.open("rb") as stream:
        return services.pairs_import(stream=stream, name=path.name, **kwargs)


def _counts():
    return (Prompt.objects.count(), Completion.objects.count(), Comparison.objects.count(), Judgement.objects.count())


def _judge(user, comparison, choice="left", **kwargs):
    return services.judgement_record(
        annotator=user,
        comparison_id=comparison.id,
        left_id=comparison.completion_a_id,
        right_id=comparison.completion_b_id,
        choice=choice,
        **kwargs,
    )


def test_import_pairs_creates_prompts_completions_and_open_comparisons(write_jsonl):
    result = _import_pairs(write_jsonl(PAIRS))
    assert (result.prompts_created, result.comparisons_created) == (2, 2)
    assert _counts() == (2, 4, 2, 0)
    assert Prompt.objects.get(external_id="p1").tags == ["math"]


def test_reimport_creates_nothing(write_jsonl):
    path = write_jsonl(PAIRS)
    _import_pairs(path, judged=True)
    again = _import_pairs(path, judged=True)
    assert (again.prompts_created, again.comparisons_created, again.judgements_created) == (0, 0, 0)
    assert _counts() == (2, 4, 2, 2)


def test_bad_record_leaves_the_database_unchanged(write_jsonl):
    path = write_jsonl([*PAIRS, {"prompt": "x", "chosen": "a"}])
    with pytest.raises(ImportFileError, match="line 3, field 'rejected': is missing"):
        _import_pairs(path)
    assert _counts() == (0, 0, 0, 0)


def test_judged_import_records_the_files_choice(write_jsonl):
    _import_pairs(write_jsonl(PAIRS, name="gold.jsonl"), judged=True)
    judgement = Judgement.objects.select_related("winner").get(comparison__prompt__external_id="p1")
    assert (judgement.source, judgement.annotator, judgement.winner.text) == ("gold.jsonl", None, "4")


def test_import_sets_judgements_per_comparison(write_jsonl):
    _import_pairs(write_jsonl(PAIRS), target_judgements=3)
    assert set(Comparison.objects.values_list("target_judgements", flat=True)) == {3}


def test_import_prompts_dedupes_by_content(write_jsonl):
    path = write_jsonl([{"prompt": "Hello?"}, {"prompt": "Hello?"}, {"prompt": "Bye?"}])
    with path.open("rb") as stream:
        result = services.prompts_import(stream=stream, name=path.name)
    assert (result.records, result.prompts_created) == (3, 2)


@pytest.mark.usefixtures("hot_path")
def test_assignment_gives_the_oldest_open_comparison():
    first, _ = ComparisonFactory.create_batch(2)
    assignment = services.assignment_next(annotator=UserFactory())
    assert assignment.comparison_id == first.id
    assert {assignment.left_id, assignment.right_id} == {first.completion_a_id, first.completion_b_id}


@pytest.mark.usefixtures("hot_path")
def test_assignment_is_stable_until_judged():
    ComparisonFactory.create_batch(2)
    user = UserFactory()
    first = services.assignment_next(annotator=user)
    assert services.assignment_next(annotator=user).id == first.id


@pytest.mark.usefixtures("hot_path")
def test_a_leased_comparison_is_not_given_to_a_second_annotator_when_k_is_1():
    ComparisonFactory()
    services.assignment_next(annotator=UserFactory())
    assert services.assignment_next(annotator=UserFactory()) is None


@pytest.mark.usefixtures("hot_path")
def test_an_expired_lease_frees_the_slot():
    ComparisonFactory()
    services.assignment_next(annotator=UserFactory())
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.assignment_next(annotator=UserFactory()) is not None


@pytest.mark.usefixtures("hot_path")
def test_an_annotator_never_sees_a_judged_comparison_again():
    comparison = ComparisonFactory(target_judgements=3)
    user = UserFactory()
    services.assignment_next(annotator=user)
    _judge(user, comparison)
    assert services.assignment_next(annotator=user) is None


@pytest.mark.usefixtures("hot_path")
def test_side_order_is_randomised_per_annotator():
    comparison = ComparisonFactory(target_judgements=40)
    lefts = {services.assignment_next(annotator=UserFactory()).left_id for _ in range(40)}
    assert lefts == {comparison.completion_a_id, comparison.completion_b_id}


@pytest.mark.usefixtures("hot_path")
def test_an_assignment_comes_with_its_card_loaded(django_assert_num_queries):
    comparison = ComparisonFactory()
    assignment = services.assignment_next(annotator=UserFactory())
    texts = {
        comparison.completion_a_id: comparison.completion_a.text,
        comparison.completion_b_id: comparison.completion_b.text,
    }
    with django_assert_num_queries(0):
        shown = (assignment.comparison.prompt.messages, assignment.left.text, assignment.right.text)
    assert shown == (comparison.prompt.messages, texts[assignment.left_id], texts[assignment.right_id])


@pytest.mark.usefixtures("hot_path")
def test_an_own_lease_on_a_comparison_others_filled_is_closed():
    filled, second = ComparisonFactory.create_batch(2)
    slow, fast = UserFactory(), UserFactory()
    services.assignment_next(annotator=slow)
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    services.assignment_next(annotator=fast)
    _judge(fast, filled)
    assert services.assignment_next(annotator=slow).comparison_id == second.id
    assert Assignment.objects.get(annotator=slow, comparison=filled).skipped_at is not None


@pytest.mark.usefixtures("hot_path")
def test_judging_without_a_lease_records_the_sides_shown():
    comparison = ComparisonFactory()
    user = UserFactory()
    services.judgement_record(
        annotator=user,
        comparison_id=comparison.id,
        left_id=comparison.completion_b_id,
        right_id=comparison.completion_a_id,
        choice="left",
    )
    lease = Assignment.objects.get(annotator=user, comparison=comparison)
    assert (lease.left_id, lease.judged_at is not None) == (comparison.completion_b_id, True)


@pytest.mark.usefixtures("hot_path")
def test_judgement_records_winner_and_counts():
    comparison = ComparisonFactory()
    user = UserFactory()
    judgement = services.judgement_record(
        annotator=user,
        comparison_id=comparison.id,
        left_id=comparison.completion_b_id,
        right_id=comparison.completion_a_id,
        choice="left",
        strength="clearly",
        reason="more precise",
    )
    comparison.refresh_from_db()
    assert (judgement.winner_id, comparison.judgement_count) == (comparison.completion_b_id, 1)


@pytest.mark.usefixtures("hot_path")
def test_second_judgement_by_the_same_annotator_conflicts():
    comparison = ComparisonFactory(target_judgements=2)
    user = UserFactory()
    _judge(user, comparison)
    with pytest.raises(services.JudgementConflict, match="already judged"):
        _judge(user, comparison, "right")
    comparison.refresh_from_db()
    assert comparison.judgement_count == 1


@pytest.mark.usefixtures("hot_path")
def test_a_full_comparison_refuses_more_judgements():
    comparison = ComparisonFactory(target_judgements=1)
    _judge(UserFactory(), comparison)
    with pytest.raises(services.JudgementConflict, match="all the judgements"):
        _judge(UserFactory(), comparison)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"choice": "maybe"}, "choice must be one of"),
        ({"strength": "hugely"}, "strength must be one of"),
        ({"choice": "tie", "strength": "much"}, "only applies"),
        ({"reason": "x" * 1001}, "longer than 1000"),
    ],
)
def test_invalid_judgements_are_refused(kwargs, message):
    comparison = ComparisonFactory()
    with pytest.raises(services.JudgementInvalid, match=message):
        _judge(UserFactory(), comparison, **{"choice": "left", **kwargs})


@pytest.mark.usefixtures("hot_path")
def test_judgement_must_name_the_comparisons_completions():
    comparison, other = ComparisonFactory.create_batch(2)
    with pytest.raises(services.JudgementInvalid, match="two completions"):
        services.judgement_record(
            annotator=UserFactory(),
            comparison_id=comparison.id,
            left_id=comparison.completion_a_id,
            right_id=other.completion_a_id,
            choice="left",
        )


@pytest.mark.usefixtures("hot_path")
def test_undo_removes_the_last_judgement_and_brings_it_back():
    first, _second = ComparisonFactory.create_batch(2)
    user = UserFactory()
    assignment = services.assignment_next(annotator=user)
    _judge(user, first)
    services.judgement_undo_last(annotator=user)
    first.refresh_from_db()
    assert (Judgement.objects.count(), first.judgement_count) == (0, 0)
    assert services.assignment_next(annotator=user).id == assignment.id


@pytest.mark.usefixtures("hot_path")
def test_skip_moves_on_and_never_returns():
    first, second = ComparisonFactory.create_batch(2)
    user = UserFactory()
    services.assignment_next(annotator=user)
    services.assignment_skip(annotator=user, comparison_id=first.id)
    assert services.assignment_next(annotator=user).comparison_id == second.id


def _export_rows(tmp_path, **kwargs):
    path = tmp_path / "out.jsonl"
    result = services.export_preferences(path=path, fmt="jsonl", **kwargs)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert result.rows == len(rows)
    return rows


def test_export_writes_the_majority_winner_as_chosen(tmp_path):
    comparison = ComparisonFactory(target_judgements=3)
    for choice in ("left", "left", "right"):
        _judge(UserFactory(), comparison, choice)
    (row,) = _export_rows(tmp_path)
    assert row["chosen"] == comparison.completion_a.text
    assert row["rejected"] == comparison.completion_b.text
    assert (row["num_judgements"], round(row["agreement"], 3)) == (3, 0.667)


def test_export_drops_ties_and_both_bad(tmp_path):
    for choice in ("tie", "both_bad"):
        _judge(UserFactory(), ComparisonFactory(), choice)
    assert _export_rows(tmp_path) == []


def test_export_min_agreement_filters_split_votes(tmp_path):
    comparison = ComparisonFactory(target_judgements=3)
    for choice in ("left", "left", "right"):
        _judge(UserFactory(), comparison, choice)
    assert _export_rows(tmp_path, min_agreement=0.9) == []


def test_export_excludes_named_annotators(tmp_path):
    comparison = ComparisonFactory(target_judgements=3)
    _judge(UserFactory(username="spammer"), comparison, "right")
    _judge(UserFactory(), comparison, "left")
    (row,) = _export_rows(tmp_path, exclude_annotators=["spammer"])
    assert (row["chosen"], row["num_judgements"]) == (comparison.completion_a.text, 1)


def test_export_since_ignores_older_judgements(tmp_path):
    _judge(UserFactory(), ComparisonFactory())
    assert _export_rows(tmp_path, since=timezone.now() + timedelta(minutes=1)) == []


def test_conversational_export_uses_message_lists(tmp_path, write_jsonl):
    _import_pairs(write_jsonl(PAIRS), judged=True)
    rows = _export_rows(tmp_path, conversational=True)
    assert rows[1]["prompt"][0] == {"role": "system", "content": "Be terse."}
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "Paris."}]


def test_standard_export_leaves_out_multi_message_prompts(tmp_path, write_jsonl):
    _import_pairs(write_jsonl(PAIRS), judged=True)
    result = services.export_preferences(path=tmp_path / "o.jsonl", fmt="jsonl")
    assert (result.rows, result.skipped_multi_turn) == (1, 1)


def test_parquet_and_hf_exports_load_with_datasets(tmp_path, write_jsonl):
    import datasets

    _import_pairs(write_jsonl(PAIRS), judged=True)
    services.export_preferences(path=tmp_path / "o.parquet", fmt="parquet", conversational=True)
    services.export_preferences(path=tmp_path / "hf", fmt="hf", conversational=True)
    from_parquet = datasets.Dataset.from_parquet(str(tmp_path / "o.parquet"), cache_dir=str(tmp_path / "c"))
    from_disk = datasets.load_from_disk(str(tmp_path / "hf"))
    assert from_parquet["chosen"] == from_disk["chosen"]
    assert len(from_disk) == 2
