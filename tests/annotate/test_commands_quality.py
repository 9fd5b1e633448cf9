"""The quality options of the dataset commands: --campaign, --include-flagged, --exclude-rushed; import_pairs --gold."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotate.models import AnnotatorFlag, Comparison
from tests.annotate.factories import CampaignFactory, ComparisonFactory, UserFactory
from tests.annotate.services._helpers import judge
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


def _export(tmp_path, *options):
    path = tmp_path / "out.jsonl"
    call_command("export_preferences", str(path), *options, stdout=StringIO())
    return [json.loads(line) for line in path.read_text().splitlines()]


def _flagged_vote():
    campaign, user = CampaignFactory(slug="helpful"), UserFactory()
    comparison = ComparisonFactory(campaign=campaign)
    judge(user, comparison)
    AnnotatorFlag.objects.create(campaign=campaign, annotator=user, reason="test", gold_seen=5, gold_correct=0)
    return comparison


def test_export_leaves_flagged_votes_out_unless_include_flagged(tmp_path):
    comparison = _flagged_vote()
    assert _export(tmp_path) == []
    assert [row["comparison_id"] for row in _export(tmp_path, "--include-flagged")] == [comparison.id]


def test_export_campaign_keeps_one_campaign(tmp_path):
    judge(UserFactory(), ComparisonFactory(campaign=CampaignFactory(slug="helpful")))
    judge(UserFactory(), ComparisonFactory(campaign=CampaignFactory(slug="harmless")))
    assert [row["campaign"] for row in _export(tmp_path, "--campaign", "harmless")] == ["harmless"]


def test_export_exclude_rushed_leaves_out_a_vote_cast_at_once(tmp_path):
    judge(UserFactory(), ComparisonFactory(campaign=CampaignFactory(rushed_seconds=5)))
    assert len(_export(tmp_path)) == 1
    assert _export(tmp_path, "--exclude-rushed") == []


def test_export_of_an_unknown_campaign_fails_naming_it(tmp_path):
    with pytest.raises(CommandError, match="nowhere"):
        _export(tmp_path, "--campaign", "nowhere")


def test_import_pairs_gold_marks_the_chosen_side(write_jsonl):
    path = write_jsonl([{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "tie": True}])
    call_command("import_pairs", str(path), "--gold", stdout=StringIO())
    assert Comparison.objects.get().gold_outcome == "tie"


@pytest.mark.usefixtures("private_queues")
def test_train_dpo_stores_the_quality_options_on_its_run():
    ModelVersion.objects.create(name="plain", path="/models/plain")
    CampaignFactory(slug="helpful")
    call_command(
        "train_dpo", "--base", "plain", "--campaign", "helpful", "--include-flagged", "--exclude-rushed",
        stdout=StringIO(),
    )  # fmt: skip
    filters = TrainingRun.objects.get().dataset_filters
    assert (filters["campaign"], filters["include_flagged"], filters["exclude_rushed"]) == ("helpful", True, True)


def test_train_dpo_for_an_unknown_campaign_queues_nothing():
    ModelVersion.objects.create(name="plain", path="/models/plain")
    with pytest.raises(CommandError, match="nowhere"):
        call_command("train_dpo", "--base", "plain", "--campaign", "nowhere")
    assert not TrainingRun.objects.exists()
