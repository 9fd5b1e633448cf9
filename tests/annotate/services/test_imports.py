import contextlib
import hashlib
import threading

import pytest
from django.db import connection

from annotate import services
from annotate.formats import ImportFileError
from annotate.models import Comparison, Completion, Judgement, Prompt
from annotate.services import imports
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


def test_a_bad_record_after_a_written_batch_rolls_everything_back(write_jsonl, monkeypatch):
    monkeypatch.setattr(imports, "BULK_CHUNK", 1)
    path = write_jsonl([*PAIRS, {"prompt": "x", "chosen": "a", "rejected": 1}])
    with pytest.raises(ImportFileError, match="line 3, field 'rejected'"):
        import_pairs(path)
    assert _counts() == (0, 0, 0, 0)


def test_records_are_deduplicated_across_batches(write_jsonl, monkeypatch):
    monkeypatch.setattr(imports, "BULK_CHUNK", 1)
    result = import_pairs(write_jsonl([*PAIRS, PAIRS[1], {**PAIRS[1], "chosen": "Paris!"}]))
    assert (result.records, result.prompts_created, result.comparisons_created) == (4, 2, 3)


def test_judged_content_imported_under_another_name_adds_no_judgements(write_jsonl, tmp_path):
    first = import_pairs(write_jsonl(PAIRS, name="gold.jsonl"), judged=True)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes((tmp_path / "gold.jsonl").read_bytes())
    again = import_pairs(copy, judged=True)
    assert (first.judgements_created, again.judgements_created, again.judged_before_as) == (2, 0, "gold.jsonl")
    assert Judgement.objects.count() == 2


def test_a_changed_file_at_the_same_path_imports_its_new_judgements(write_jsonl):
    import_pairs(write_jsonl(PAIRS, name="gold.jsonl"), judged=True)
    changed = import_pairs(
        write_jsonl([*PAIRS, {"prompt": "1+1?", "chosen": "2", "rejected": "3"}], name="gold.jsonl"), judged=True
    )
    assert (changed.judgements_created, changed.judged_before_as) == (1, "")


def test_judgements_remember_the_hash_of_the_files_bytes(write_jsonl):
    path = write_jsonl(PAIRS, name="gold.jsonl")
    import_pairs(path, judged=True)
    assert set(Judgement.objects.values_list("import_hash", flat=True)) == {
        hashlib.sha256(path.read_bytes()).hexdigest()
    }


def test_an_unjudged_import_does_not_count_as_the_judged_one(write_jsonl):
    path = write_jsonl(PAIRS, name="gold.jsonl")
    import_pairs(path)
    assert import_pairs(path, judged=True).judgements_created == 2


@pytest.mark.django_db(transaction=True)
def test_two_judged_imports_of_the_same_bytes_at_once_judge_once(write_jsonl, tmp_path, monkeypatch):
    # Each import waits after its check for the other to check too. Without a lock both find no
    # earlier import, and one fails on the other's new prompts (or both judge); with it, the
    # second waits for the first to commit (the barrier times out) and then adds nothing.
    barrier = threading.Barrier(2, timeout=2)
    check = imports._judged_source

    def check_then_wait(file_hash):
        found = check(file_hash)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return found

    monkeypatch.setattr(imports, "_judged_source", check_then_wait)
    gold = write_jsonl(PAIRS, name="gold.jsonl")
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(gold.read_bytes())
    failures = []

    def run(path):
        try:
            import_pairs(path, judged=True)
        except Exception as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(path,)) for path in (gold, copy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (failures, Judgement.objects.count()) == ([], 2)
