import json

import pytest
from django.test import override_settings

from annotate import services as annotate_services
from config.artifacts import artifact_store
from tests.annotate.factories import PromptFactory, StaffFactory, UserFactory
from tests.training.factories import judged_preferences
from training import services
from training.models import GenerationRun, GenerationShard, RunStatus, TrainingMetric, TrainingRun

# Jobs go to a Redis database of this test process: another test run's worker must not take them.
pytestmark = pytest.mark.usefixtures("private_queues")

FAST = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "warmup_steps": 0,
    "batch_size": 2,
    "grad_accum": 1,
    "max_length": 128,
    "max_prompt_length": 64,
}


def _auth(user):
    return {"HTTP_AUTHORIZATION": f"Bearer {annotate_services.api_token_create(user=user).key}"}


def _post(client, url, payload, user):
    return client.post(url, json.dumps(payload), content_type="application/json", **_auth(user))


def test_runs_are_staff_only(client, tiny_version):
    response = _post(client, "/api/v1/runs", {"base_version": "tiny"}, UserFactory())
    assert response.status_code == 403


def test_start_run_is_202_and_the_worker_finishes_it(client, tiny_version, worker, wait_for):
    judged_preferences(4)
    staff = StaffFactory()
    response = _post(client, "/api/v1/runs", {"base_version": "tiny", "hyperparameters": FAST}, staff)
    assert response.status_code == 202
    run_id = response.json()["id"]
    worker.start(burst=True)

    def finished():
        body = client.get(f"/api/v1/runs/{run_id}", **_auth(staff)).json()
        return body["status"] in ("succeeded", "failed")

    wait_for(finished, what="the run", timeout=240)
    body = client.get(f"/api/v1/runs/{run_id}", **_auth(staff)).json()
    assert body["status"] == "succeeded", TrainingRun.objects.get(pk=run_id).traceback
    assert body["model_version"] == f"tiny+dpo{run_id}"
    assert body["latest_metrics"]["step"] == body["progress_total"]
    assert "rewards/accuracies" in body["latest_metrics"]


def test_a_run_reports_its_schedule_held_out_scores_and_verdict(client, tiny_version):
    run = TrainingRun.objects.create(
        base_version=tiny_version,
        status=RunStatus.SUCCEEDED,
        heldout_rows=4,
        schedule={"total_steps": 27, "regime": "small-data"},
        eval_before={"eval/rewards/accuracies": 0.0},
        eval_after={"eval/rewards/accuracies": 0.25},
        learned=False,
        verdict="It did not learn.",
    )
    TrainingMetric.objects.create(run=run, split="train", step=27, values={"loss": 0.5})
    TrainingMetric.objects.create(run=run, split="eval", step=27, values={"eval/loss": 0.9})
    body = client.get(f"/api/v1/runs/{run.pk}", **_auth(StaffFactory())).json()
    assert body["schedule"] == {"total_steps": 27, "regime": "small-data"}
    assert (body["eval_before"], body["eval_after"]) == (run.eval_before, run.eval_after)
    assert (body["learned"], body["verdict"], body["heldout_rows"]) == (False, "It did not learn.", 4)
    assert body["latest_metrics"] == {"step": 27, "loss": 0.5}


@pytest.mark.parametrize(("checkpoints", "step"), [((), None), ((2, 4), 4)])
def test_a_stopped_run_says_which_step_a_resume_continues_from(client, tiny_version, tmp_path, checkpoints, step):
    run = TrainingRun.objects.create(base_version=tiny_version, status=RunStatus.FAILED)
    for saved in checkpoints:
        folder = tmp_path / f"step-{saved:08d}"
        folder.mkdir(parents=True)
        (folder / "state.json").write_text(json.dumps({"step": saved}))
        artifact_store().put_dir(folder, f"{run.store_key}/checkpoints/{folder.name}")
    body = client.get(f"/api/v1/runs/{run.pk}", **_auth(StaffFactory())).json()
    assert body["resumable_from_step"] == step


def test_unknown_hyperparameter_is_400(client, tiny_version):
    response = _post(client, "/api/v1/runs", {"base_version": "tiny", "hyperparameters": {"lr0": 1}}, StaffFactory())
    assert response.status_code == 400
    assert "lr0" in response.json()["detail"]


def test_unknown_base_version_is_404(client, tiny_version):
    assert _post(client, "/api/v1/runs", {"base_version": "nope"}, StaffFactory()).status_code == 404


def test_cancel_a_queued_run(client, tiny_version):
    judged_preferences(2)
    staff = StaffFactory()
    run_id = _post(client, "/api/v1/runs", {"base_version": "tiny"}, staff).json()["id"]
    response = client.post(f"/api/v1/runs/{run_id}/cancel", **_auth(staff))
    assert response.json()["status"] == RunStatus.CANCELLED
    assert client.post(f"/api/v1/runs/{run_id}/cancel", **_auth(staff)).status_code == 409


@override_settings(RQ_QUEUES={"gpu": {"URL": "redis://127.0.0.1:1/0"}, "default": {"URL": "redis://127.0.0.1:1/0"}})
def test_redis_down_is_503_with_a_clear_message(client, tiny_version):
    response = _post(client, "/api/v1/runs", {"base_version": "tiny"}, StaffFactory())
    assert response.status_code == 503
    assert "cannot be reached" in response.json()["detail"]
    assert TrainingRun.objects.count() == 0


def test_models_lists_versions_with_parents(client, tiny_version):
    services.default_model_version()
    names = {m["name"]: m for m in client.get("/api/v1/models", **_auth(StaffFactory())).json()}
    assert names["tiny"]["parent"] is None
    assert names["smollm2-135m-instruct"]["is_default"] is True


def test_generations_start_is_202(client, tiny_version):
    PromptFactory()
    payload = {"model_version": "tiny", "n": 2, "max_new_tokens": 4}
    response = _post(client, "/api/v1/generations", payload, StaffFactory())
    assert response.status_code == 202
    assert GenerationRun.objects.get(pk=response.json()["id"]).pairing == GenerationRun.Pairing.SELF


def test_generations_start_in_a_campaign(client, tiny_version):
    from tests.annotate.factories import CampaignFactory

    campaign = CampaignFactory(slug="helpful")
    payload = {"model_version": "tiny", "n": 2, "max_new_tokens": 4, "campaign": "helpful"}
    response = _post(client, "/api/v1/generations", payload, StaffFactory())
    assert response.json()["campaign"] == "helpful"
    assert GenerationRun.objects.get(pk=response.json()["id"]).campaign == campaign


def test_generations_in_an_unknown_campaign_are_400_naming_it(client, tiny_version):
    payload = {"model_version": "tiny", "n": 2, "campaign": "nope"}
    response = _post(client, "/api/v1/generations", payload, StaffFactory())
    assert response.status_code == 400
    assert "nope" in response.json()["detail"]
    assert not GenerationRun.objects.exists()


def test_a_failed_generation_resumes_with_202(client, tiny_version):
    run = GenerationRun.objects.create(model_version=tiny_version, status=RunStatus.FAILED)
    response = _post(client, f"/api/v1/generations/{run.pk}/resume", {}, StaffFactory())
    assert response.status_code == 202
    assert response.json()["status"] == RunStatus.QUEUED


def test_resuming_a_finished_generation_is_409(client, tiny_version):
    run = GenerationRun.objects.create(model_version=tiny_version, status=RunStatus.SUCCEEDED)
    response = _post(client, f"/api/v1/generations/{run.pk}/resume", {}, StaffFactory())
    assert response.status_code == 409


@pytest.mark.parametrize("payload", [{"n": 1}, {"temperature": -1}, {"prompts": "some"}])
def test_generations_with_bad_settings_are_400(client, tiny_version, payload):
    response = _post(client, "/api/v1/generations", {"model_version": "tiny", **payload}, StaffFactory())
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("hyperparameters", "field"), [({"loss": ["nope"]}, "loss"), ({"lr": "abc"}, "lr"), ({"epochs": 0}, "epochs")]
)
def test_a_bad_hyperparameter_is_a_400_naming_it_and_queues_nothing(client, tiny_version, hyperparameters, field):
    response = _post(
        client, "/api/v1/runs", {"base_version": "tiny", "hyperparameters": hyperparameters}, StaffFactory()
    )
    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert TrainingRun.objects.count() == 0


def test_a_generation_setting_out_of_bounds_is_refused_and_queues_nothing(client, tiny_version):
    response = _post(client, "/api/v1/generations", {"model_version": "tiny", "temperature": 9}, StaffFactory())
    assert response.status_code == 400
    assert "temperature" in response.json()["detail"]
    assert GenerationRun.objects.count() == 0


@pytest.mark.parametrize("url", ["/api/v1/runs/{}", "/api/v1/generations/{}"])
@pytest.mark.parametrize("run_id", [0, 2**63, 10**30])
def test_an_id_out_of_range_is_a_400_naming_it(db, client, url, run_id):
    response = client.get(url.format(run_id), **_auth(StaffFactory()))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("run_id: ")


@pytest.mark.parametrize("url", ["/api/v1/runs/{}", "/api/v1/generations/{}"])
def test_the_largest_id_that_names_no_run_is_a_404(db, client, url):
    assert client.get(url.format(2**63 - 1), **_auth(StaffFactory())).status_code == 404


def test_an_infinite_hyperparameter_is_a_400_naming_it(client, version_plain):
    body = '{"hyperparameters": {"batch_size": 1e309}}'  # JSON's number beyond a double: infinity
    auth = _auth(StaffFactory())
    response = client.post("/api/v1/runs", body, content_type="application/json", **auth)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("payload.hyperparameters.batch_size")
    assert not TrainingRun.objects.exists()


def test_a_round_limited_beyond_the_column_is_a_400_naming_it(client, version_plain):
    payload = {"model_version": "plain", "max_prompts": 2**31}
    response = _post(client, "/api/v1/generations", payload, StaffFactory())
    assert response.status_code == 400
    assert "max_prompts" in response.json()["detail"]


@pytest.fixture
def version_plain(db):
    from training.models import ModelVersion

    return ModelVersion.objects.create(name="plain", path="/models/plain", is_default=True)


def test_a_run_started_on_two_processes_says_so(client, tiny_version):
    response = _post(client, "/api/v1/runs", {"base_version": "tiny", "processes": 2}, StaffFactory())
    assert response.status_code == 202, response.content
    assert response.json()["processes"] == 2
    assert TrainingRun.objects.get().processes == 2


@pytest.mark.parametrize("processes", [0, 9])
def test_a_run_on_a_process_count_out_of_bounds_is_refused(client, tiny_version, processes):
    response = _post(client, "/api/v1/runs", {"base_version": "tiny", "processes": processes}, StaffFactory())
    assert response.status_code in (400, 422)
    assert "processes" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_a_generation_reports_its_shards(client, tiny_version):
    run = GenerationRun.objects.create(model_version=tiny_version, status=RunStatus.RUNNING)
    GenerationShard.objects.create(
        run=run, index=0, prompt_ids=[1, 2, 3], status=RunStatus.SUCCEEDED, prompts_done=3, attempts=1,
        worker_name="w1", host="gpu-a",
    )
    body = client.get(f"/api/v1/generations/{run.pk}", **_auth(StaffFactory())).json()
    assert [
        {k: shard[k] for k in ("index", "status", "prompts", "prompts_done", "worker_name", "host", "attempts")}
        for shard in body["shards"]
    ] == [{"index": 0, "status": "succeeded", "prompts": 3, "prompts_done": 3, "worker_name": "w1", "host": "gpu-a",
           "attempts": 1}]
