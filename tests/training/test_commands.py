from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotate.models import Completion
from tests.annotate.factories import CampaignFactory, CompletionFactory, PromptFactory
from tests.training.factories import judged_preferences
from training.models import GenerationRun, ModelVersion, TrainingRun

# Jobs go to a Redis database of this test process: another test run's worker must not take them.
pytestmark = pytest.mark.usefixtures("private_queues")


def _run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_register_model_adds_a_local_folder(tiny_model_path, transactional_db):
    assert "registered small" in _run("register_model", "small", str(tiny_model_path))
    assert ModelVersion.objects.get(name="small").path == str(tiny_model_path)


def test_register_model_with_an_unknown_path_fails_clearly(transactional_db, tmp_path):
    with pytest.raises(CommandError, match="no-such-model"):
        call_command("register_model", "x", str(tmp_path / "no-such-model"))
    assert not ModelVersion.objects.filter(name="x").exists()


def test_train_dpo_wait_prints_the_new_version_last(tiny_version, worker):
    judged_preferences(4)
    worker.start()
    out = _run(
        "train_dpo", "--base", "tiny", "--optimizer", "adamw", "--lr", "1e-3", "--batch-size", "2",
        "--grad-accum", "1", "--warmup-steps", "0", "--max-length", "128", "--max-prompt-length", "64", "--wait",
    )  # fmt: skip
    version = ModelVersion.objects.exclude(trained_by=None).get()
    assert out.strip().splitlines()[-1] == version.name
    assert version.trained_by.hyperparameters["lr"] == 1e-3


def test_train_dpo_with_bad_options_fails_before_queueing(tiny_version):
    with pytest.raises(CommandError, match="beta"):
        call_command("train_dpo", "--base", "tiny", "--beta", "0")


def test_generate_wait_reports_new_comparisons(tiny_version, worker):
    PromptFactory.create_batch(2)
    worker.start()
    out = _run("generate", "--model", "tiny", "--n", "2", "--max-new-tokens", "4", "--temperature", "1", "--wait")
    assert "succeeded" in out
    assert out.strip().endswith("new comparisons in the queue")


def test_generate_resume_answers_the_prompts_a_failed_round_did_not_reach(tiny_version, worker):
    done, left = PromptFactory.create_batch(2)
    run = GenerationRun.objects.create(
        model_version=tiny_version, pairing="self", n=2, max_new_tokens=4, temperature=1.0, status="failed",
        prompt_ids=[done.pk, left.pk], progress_step=1, progress_total=2,
    )
    for text in ("kept one", "kept two"):
        CompletionFactory(prompt=done, text=text, model_version=tiny_version, generation={"generation_run": run.pk})
    worker.start()
    out = _run("generate", "--resume", str(run.pk), "--wait")
    assert "queued again (1 of 2 prompts done)" in out
    assert "succeeded" in out
    assert sorted(Completion.objects.filter(model_version=tiny_version).values_list("prompt_id", flat=True)) == [
        done.pk, done.pk, left.pk, left.pk
    ]


def test_generate_resume_of_an_unknown_round_fails_clearly(transactional_db):
    with pytest.raises(CommandError, match="no generation run 404"):
        call_command("generate", "--resume", "404")


def test_next_round_trains_then_generates_with_the_new_version(tiny_version, worker):
    judged_preferences(4)
    worker.start()
    out = _run(
        "next_round", "--base", "tiny", "--max-new-tokens", "4", "--optimizer", "adamw", "--lr", "1e-3",
        "--batch-size", "2", "--grad-accum", "1", "--warmup-steps", "0", "--max-length", "128",
        "--max-prompt-length", "64", "--wait",
    )  # fmt: skip
    new = ModelVersion.objects.exclude(trained_by=None).get()
    assert out.strip().splitlines()[-1].startswith(f"{new.name}: ")
    assert new.generation_runs.get().status == "succeeded"


def test_wait_gives_up_after_its_timeout_when_no_worker_takes_the_run(tiny_version):
    PromptFactory.create_batch(1)
    with pytest.raises(CommandError, match="still queued after the wait timeout"):
        call_command("generate", "--model", "tiny", "--n", "2", "--wait", "--wait-timeout", "0.1", stdout=StringIO())


@pytest.mark.parametrize("since", ["yesterday", "2026-13-45", "0001-01-01T00:00:00+14:00"])
def test_train_dpo_with_a_bad_since_fails_naming_it(db, since):
    ModelVersion.objects.create(name="plain", path="/models/plain")
    with pytest.raises(CommandError, match="since"):
        call_command("train_dpo", "--base", "plain", "--since", since)
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(("option", "value"), [("--lr", "0"), ("--batch-size", "-1"), ("--min-agreement", "5")])
def test_train_dpo_with_a_value_out_of_range_fails_before_queueing(db, option, value):
    ModelVersion.objects.create(name="plain", path="/models/plain")
    with pytest.raises(CommandError, match=option.removeprefix("--").replace("-", "_")):
        call_command("train_dpo", "--base", "plain", option, value)
    assert not TrainingRun.objects.exists()


@pytest.fixture
def plain_versions(db):
    parent = ModelVersion.objects.create(name="parent", path="/models/parent")
    return ModelVersion.objects.create(name="child", path="/models/child", parent=parent)


@pytest.mark.parametrize(
    "command",
    [
        ("generate", "--model", "child"),
        ("next_round", "--base", "child"),
        ("seed_round",),
        ("evaluate_round", "--model", "child"),
    ],
)
def test_an_unknown_campaign_is_a_clear_error_naming_it(plain_versions, command):
    with pytest.raises(CommandError, match="no campaign with slug 'nope'"):
        call_command(*command, "--campaign", "nope")
    assert not GenerationRun.objects.exists()


def test_generate_for_a_campaign_queues_its_round(plain_versions):
    CampaignFactory(slug="helpful")
    _run("generate", "--model", "child", "--campaign", "helpful")
    assert GenerationRun.objects.get().campaign.slug == "helpful"


def test_next_round_for_a_campaign_keeps_it(plain_versions):
    CampaignFactory(slug="helpful")
    _run("next_round", "--base", "child", "--campaign", "helpful")
    assert TrainingRun.objects.get().dataset_filters["campaign"] == "helpful"
    assert GenerationRun.objects.get().campaign.slug == "helpful"


def test_next_round_takes_the_quality_options_into_its_run(plain_versions):
    _run("next_round", "--base", "child", "--include-flagged", "--exclude-rushed")
    filters = TrainingRun.objects.get().dataset_filters
    assert (filters["include_flagged"], filters["exclude_rushed"]) == (True, True)


def test_seed_round_for_a_campaign_queues_its_round(db):
    CampaignFactory(slug="helpful")
    _run("seed_round", "--campaign", "helpful")
    assert GenerationRun.objects.get().campaign.slug == "helpful"


def test_evaluate_round_for_a_campaign_queues_its_round(plain_versions, settings):
    CampaignFactory(slug="helpful")
    PromptFactory(tags=[settings.DUET_EVAL_TAG])
    _run("evaluate_round", "--model", "child", "--campaign", "helpful")
    assert GenerationRun.objects.get().campaign.slug == "helpful"


def test_register_model_publishes_a_local_folder_into_the_store(tiny_model_path, transactional_db, artifacts):
    out = _run("register_model", "small", str(tiny_model_path))
    version = ModelVersion.objects.get(name="small")
    assert f"published {tiny_model_path} to {version.store_url}" in out
    assert version.store_url.startswith(f"{artifacts.url}/models/small-{version.content_hash[:12]}")


def test_register_model_takes_a_store_url(tiny_model_path, transactional_db, artifacts):
    ref = artifacts.store.put_dir(tiny_model_path, "elsewhere/tiny")
    assert f"from the store at {ref.uri}" in _run("register_model", "stored", ref.uri)
    version = ModelVersion.objects.get(name="stored")
    assert (version.path, version.store_url, version.content_hash) == (ref.uri, ref.uri, ref.content_hash)


def test_register_model_refuses_a_store_url_without_a_manifest(transactional_db, file_artifacts):
    with pytest.raises(CommandError, match=r"/nothing is not a published folder: it has no MANIFEST\.json"):
        call_command("register_model", "x", f"{file_artifacts.url}/nothing")
    assert not ModelVersion.objects.filter(name="x").exists()


def test_register_model_keeps_the_built_in_name_off_the_store(transactional_db, file_artifacts):
    assert "each worker resolves it itself" in _run("register_model", "builtin", "smollm2-135m-instruct")
    assert ModelVersion.objects.get(name="builtin").store_url == ""


def test_train_dpo_processes_queues_a_run_on_that_many_processes(tiny_version):
    out = _run("train_dpo", "--base", "tiny", "--processes", "2")
    assert TrainingRun.objects.get().processes == 2
    assert "queued" in out


def test_train_dpo_refuses_more_processes_than_the_limit(tiny_version):
    with pytest.raises(CommandError, match="processes"):
        call_command("train_dpo", "--base", "tiny", "--processes", "99")
    assert not TrainingRun.objects.exists()


def test_next_round_trains_on_the_processes_asked_for(tiny_version):
    _run("next_round", "--base", "tiny", "--processes", "2")
    assert TrainingRun.objects.get().processes == 2
