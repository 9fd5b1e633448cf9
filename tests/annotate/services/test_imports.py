import pytest

from annotate import services
from annotate.formats import ImportFileError
from annotate.models import Comparison, Completion, Judgement, Prompt
from tests.annotate.services._helpers import PAIRS, import_pairs

pytestmark = pytest.mark.django_db


def _counts():
    return (Prompt.objects.count(), Completion.objects.count(), Comparison.objects.count(), Judgement.objects.count())


def test_import_pairs_creates_prompts_completions_and_open_comparisons(write_jsonl):
    result = import_pairs(write_jsonl(PAIRS))
    assert (result.prompts_created, result.comparisons_created) == (2, 2)
    assert _counts() == (2, 4, 2, 0)
    assert Prompt.objects.get(external_id="p1").tags == ["math"]


def test_reimport_creates_nothing(write_jsonl):
    path = write_jsonl(PAIRS)
    import_pairs(path, judged=True)
    again = import_pairs(path, judged=True)
    assert (again.prompts_created, again.comparisons_created, again.judgements_created) == (0, 0, 0)
    assert _counts() == (2, 4, 2, 2)


def test_bad_record_leaves_the_database_unchanged(write_jsonl):
    path = write_jsonl([*PAIRS, {"prompt": "x", "chosen": "a"}])
    with pytest.raises(ImportFileError, match="line 3, field 'rejected': is missing"):
        import_pairs(path)
    assert _counts() == (0, 0, 0, 0)


def test_judged_import_records_the_files_choice(write_jsonl):
    import_pairs(write_jsonl(PAIRS, name="gold.jsonl"), judged=True)
    judgement = Judgement.objects.select_related("winner").get(comparison__prompt__external_id="p1")
    assert (judgement.source, judgement.annotator, judgement.winner.text) == ("gold.jsonl", None, "4")


def test_import_sets_judgements_per_comparison(write_jsonl):
    import_pairs(write_jsonl(PAIRS), target_judgements=3)
    assert set(Comparison.objects.values_list("target_judgements", flat=True)) == {3}


def test_import_prompts_dedupes_by_content(write_jsonl):
    path = write_jsonl([{"prompt": "Hello?"}, {"prompt": "Hello?"}, {"prompt": "Bye?"}])
    with path.open("rb") as stream:
        result = services.prompts_import(stream=stream, name=path.name)
    assert (result.records, result.prompts_created) == (3, 2)
