"""Freezing a run's data: the file and the run's judgement list come from one export."""

from __future__ import annotations

import io
import json
import re

import pytest

from annotate import services as annotate_services
from annotate.filters import JudgementFilter
from annotate.models import Comparison, Judgement
from config.artifacts import artifact_store
from tests.annotate.factories import UserFactory
from tests.training.factories import judged_preferences
from training.evaluation import HELDOUT_MIN, HELDOUT_MIN_PAIRS, heldout_indices
from training.models import TrainingRun
from training.services.worker.run_artifacts import dataset_fetch
from training.services.worker.training_job import dataset_freeze

pytestmark = pytest.mark.django_db

PAIRS = [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.", "rejected": f"No {i}."} for i in range(3)]


def _import_judged(name: str, k: int = 1) -> None:
    data = "\n".join(json.dumps(record) for record in PAIRS).encode()
    annotate_services.pairs_import(stream=io.BytesIO(data), name=name, judged=True, target_judgements=k)


def _judge_all_open(choice: str = "left") -> None:
    annotator = UserFactory()
    for comparison in Comparison.objects.all():
        annotate_services.judgement_record_scripted(
            annotator=annotator,
            comparison_id=comparison.id,
            left_id=comparison.completion_a_id,
            right_id=comparison.completion_b_id,
            choice=choice,
        )


def _run(tiny_version, judgement_filter: JudgementFilter) -> TrainingRun:
    return TrainingRun.objects.create(base_version=tiny_version, dataset_filters=judgement_filter.to_json())


def test_judgements_imported_from_an_excluded_file_are_not_among_the_run_s_judgements(tiny_version, tmp_path):
    _import_judged("gold.jsonl", k=2)
    _judge_all_open()
    run = _run(tiny_version, JudgementFilter.from_inputs(exclude="gold.jsonl"))
    dataset_freeze(run=run, work=tmp_path / "run")
    assert run.dataset_rows == len(PAIRS)
    assert not run.judgements.filter(source="gold.jsonl").exists()
    assert run.judgements.count() == len(PAIRS)


def _rows(path) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def test_the_run_records_exactly_the_judgements_its_files_were_built_from(tiny_version, tmp_path):
    judged_preferences(HELDOUT_MIN_PAIRS)
    _import_judged("pairs.jsonl")
    run = _run(tiny_version, JudgementFilter())
    dataset_freeze(run=run, work=tmp_path / "run")
    rows = _rows(tmp_path / "run" / "dataset.jsonl") + _rows(tmp_path / "run" / "heldout.jsonl")
    in_files = set(
        Judgement.objects.filter(comparison_id__in=[r["comparison_id"] for r in rows]).values_list("id", flat=True)
    )
    assert set(run.judgements.values_list("id", flat=True)) == in_files
    assert len(rows) == run.dataset_rows + run.heldout_rows == HELDOUT_MIN_PAIRS + len(PAIRS)


@pytest.mark.parametrize(("pairs", "held"), [(HELDOUT_MIN_PAIRS - 1, 0), (HELDOUT_MIN_PAIRS, HELDOUT_MIN), (90, 9)])
def test_freezing_holds_out_a_tenth_of_the_pairs_at_least_eight_and_none_below_forty(
    tiny_version, tmp_path, pairs, held
):
    judged_preferences(pairs)
    run = _run(tiny_version, JudgementFilter())
    dataset_freeze(run=run, work=tmp_path / "run")
    assert (run.dataset_rows, run.heldout_rows) == (pairs - held, held)
    assert len(_rows(tmp_path / "run" / "dataset.jsonl")) == pairs - held
    assert (tmp_path / "run" / "heldout.jsonl").exists() == bool(held)
    assert run.heldout_path == (artifact_store().uri(f"runs/train-{run.pk}/heldout.jsonl") if held else "")


def test_the_frozen_files_are_published_to_the_run_s_store_folder(tiny_version, tmp_path):
    judged_preferences(HELDOUT_MIN_PAIRS)
    run = _run(tiny_version, JudgementFilter())
    dataset_freeze(run=run, work=tmp_path / "run")
    store = artifact_store()
    assert run.dataset_path == store.uri(f"runs/train-{run.pk}/dataset.jsonl")
    for uri, local in ((run.dataset_path, "dataset.jsonl"), (run.heldout_path, "heldout.jsonl")):
        with store.open(uri) as fh:
            assert fh.read() == (tmp_path / "run" / local).read_bytes()


def test_a_host_without_the_frozen_files_fetches_them_and_checks_the_hash(tiny_version, tmp_path):
    judged_preferences(HELDOUT_MIN_PAIRS)
    run = _run(tiny_version, JudgementFilter())
    dataset_freeze(run=run, work=tmp_path / "host-a")
    lines: list[str] = []
    dataset, heldout = dataset_fetch(run=run, work=tmp_path / "host-b", log=lines.append)
    assert dataset.read_bytes() == (tmp_path / "host-a" / "dataset.jsonl").read_bytes()
    assert heldout is not None
    assert heldout.read_bytes() == (tmp_path / "host-a" / "heldout.jsonl").read_bytes()
    assert re.fullmatch(rf"fetched dataset.jsonl \(\d[\d.]* [kMG]?B\) from {re.escape(run.dataset_path)}", lines[0])


def test_a_stored_dataset_that_changed_since_it_was_frozen_is_refused(tiny_version, tmp_path):
    judged_preferences(4)
    run = _run(tiny_version, JudgementFilter())
    dataset_freeze(run=run, work=tmp_path / "host-a")
    (tmp_path / "other.jsonl").write_text("{}\n")
    artifact_store().put_file(tmp_path / "other.jsonl", f"runs/train-{run.pk}/dataset.jsonl")
    with pytest.raises(ValueError, match=f"{re.escape(run.dataset_path)} has SHA-256 .* but the run froze"):
        dataset_fetch(run=run, work=tmp_path / "host-b", log=lambda line: None)


def test_the_held_out_pairs_are_the_seeded_choice_and_never_trained_on(tiny_version, tmp_path):
    comparisons = judged_preferences(HELDOUT_MIN_PAIRS)
    run = _run(tiny_version, JudgementFilter())
    run.hyperparameters = {"seed": 7}
    dataset_freeze(run=run, work=tmp_path / "run")
    held = {r["comparison_id"] for r in _rows(tmp_path / "run" / "heldout.jsonl")}
    trained = {r["comparison_id"] for r in _rows(tmp_path / "run" / "dataset.jsonl")}
    assert held == {comparisons[i].id for i in heldout_indices(HELDOUT_MIN_PAIRS, seed=7)}
    assert not held & trained


def test_the_frozen_dataset_follows_an_adjudication_against_the_majority(tiny_version, tmp_path):
    _import_judged("pairs.jsonl", k=3)
    _judge_all_open("left")
    _judge_all_open("right")
    overruled = Comparison.objects.order_by("id").first()
    assert overruled is not None
    annotate_services.comparison_adjudicate(comparison_id=overruled.id, outcome="b", by=UserFactory(is_staff=True))
    run = _run(tiny_version, JudgementFilter())
    dataset_freeze(run=run, work=tmp_path / "run")
    rows = {r["comparison_id"]: r for r in _rows(tmp_path / "run" / "dataset.jsonl")}
    assert rows[overruled.id]["chosen"] == overruled.completion_b.messages
    assert rows[overruled.id]["adjudicated"] is True
    assert not any(r["adjudicated"] for i, r in rows.items() if i != overruled.id)
