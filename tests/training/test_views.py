"""The staff's training pages: access, starting and watching runs, cancel/resume, generation, the loop."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.test import Client, override_settings

from annotate.models import Judgement
from tests.annotate.factories import StaffFactory, UserFactory
from tests.training.factories import judged_preferences
from training import services
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingMetric, TrainingRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_queues")]

HTMX = {"HX-Request": "true"}
REDIS_DOWN = {"gpu": {"URL": "redis://127.0.0.1:1/0"}, "default": {"URL": "redis://127.0.0.1:1/0"}}
PAGES = ["/training/", "/training/runs/new/", "/training/models/", "/training/leaderboard/"]


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(StaffFactory())
    return client


@pytest.fixture
def version() -> ModelVersion:
    return ModelVersion.objects.create(name="tiny-base", path="/models/tiny-base")


@pytest.fixture
def child(version: ModelVersion) -> ModelVersion:
    return ModelVersion.objects.create(name="tiny-base+dpo1", path="/models/tiny-child", parent=version)


def _start_form(version: ModelVersion, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "base_version": version.pk,
        "since": "",
        "min_agreement": "0",
        "exclude_annotators": "",
        "loss": "sigmoid",
        "beta": "0.1",
        "label_smoothing": "0",
        "optimizer": "rmsprop",
        "lr": "1e-06",
        "warmup_steps": "150",
        "batch_size": "8",
        "grad_accum": "8",
        "epochs": "1",
        "max_length": "512",
        "max_prompt_length": "256",
        "lora_r": "0",
        "lora_alpha": "16",
        "sft_weight": "0",
        "max_grad_norm": "10",
        "seed": "42",
        "save_every": "0",
    }
    data.update(changes)
    return data


def _generation_form(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "prompts": "all",
        "since": "",
        "tag": "",
        "pairing": "parent",
        "n": "1",
        "temperature": "0.7",
        "top_p": "0.95",
        "max_new_tokens": "8",
        "seed": "0",
        "max_prompts": "",
    }
    data.update(changes)
    return data


def _text(response) -> str:  # type: ignore[no-untyped-def]
    return response.content.decode()


# Access ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", PAGES)
def test_pages_send_anonymous_visitors_to_login(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", PAGES)
def test_pages_refuse_annotators(client: Client, url: str) -> None:
    client.force_login(UserFactory())
    assert client.get(url).status_code == 403


def test_annotators_cannot_start_a_run_by_post(client: Client, version: ModelVersion) -> None:
    client.force_login(UserFactory())
    response = client.post("/training/runs/new/", _start_form(version))
    assert response.status_code == 403
    assert TrainingRun.objects.count() == 0


def test_a_post_without_the_csrf_token_is_refused(version: ModelVersion) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(StaffFactory())
    assert client.post("/training/runs/new/", _start_form(version)).status_code == 403
    assert TrainingRun.objects.count() == 0


def test_pages_carry_the_strict_content_security_policy(staff_client: Client) -> None:
    response = staff_client.get("/training/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "style-src 'self'" in response["Content-Security-Policy"]


def test_staff_see_training_and_models_in_the_nav(staff_client: Client) -> None:
    page = _text(staff_client.get("/training/"))
    assert '<a href="/training/" aria-current="page">Training</a>' in page
    assert '<a href="/training/models/">Models</a>' in page


# Starting a run -------------------------------------------------------------------------


def test_the_start_form_is_prefilled_with_the_papers_defaults(staff_client: Client, version: ModelVersion) -> None:
    page = _text(staff_client.get("/training/runs/new/"))
    assert re.search(r'<option value="sigmoid" selected>', page)
    assert re.search(r'<option value="rmsprop" selected>', page)
    for name, value in (("beta", "0.1"), ("lr", "1e-06"), ("warmup_steps", "150"), ("lora_r", "0")):
        assert re.search(rf'name="{name}" value="{re.escape(value)}"', page), name
    assert re.search(r'name="batch_size" value="8"', page)
    assert re.search(r'name="grad_accum" value="8"', page)
    assert "warm-up is scaled to 10% of the steps" in page


def test_the_start_form_offers_every_registered_loss(staff_client: Client, version: ModelVersion) -> None:
    from dpo_engine.losses import LOSSES

    page = _text(staff_client.get("/training/runs/new/"))
    for name in LOSSES:
        assert f'<option value="{name}"' in page


# The job is enqueued when the run's transaction commits: a real commit is needed.
@pytest.mark.django_db(transaction=True)
def test_starting_a_run_queues_it_with_its_hyperparameters_and_opens_its_page(
    staff_client: Client, version: ModelVersion
) -> None:
    response = staff_client.post(
        "/training/runs/new/",
        _start_form(version, optimizer="adamw", lr="0.001", batch_size="2", grad_accum="1", lora_r="8", loss="ipo"),
    )
    run = TrainingRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/training/runs/{run.pk}/"
    assert run.status == RunStatus.QUEUED
    assert run.rq_job_id
    assert run.base_version == version
    assert run.hyperparameters == {
        "optimizer": "adamw",
        "lr": 0.001,
        "batch_size": 2,
        "grad_accum": 1,
        "lora_r": 8,
        "loss": ["ipo"],
    }


def test_the_run_keeps_the_data_filters_of_the_form(staff_client: Client, version: ModelVersion) -> None:
    staff_client.post(
        "/training/runs/new/",
        _start_form(version, since="2026-01-02", min_agreement="0.75", exclude_annotators="bot, ann"),
    )
    run = TrainingRun.objects.get()
    assert run.dataset_filters == {
        "since": "2026-01-02T00:00:00+00:00",
        "min_agreement": 0.75,
        "exclude_annotators": ["bot", "ann"],
        "exclude_sources": ["bot", "ann"],
    }


def test_invalid_hyperparameters_show_the_engines_error_and_start_nothing(
    staff_client: Client, version: ModelVersion
) -> None:
    response = staff_client.post("/training/runs/new/", _start_form(version, max_prompt_length="512"))
    assert response.status_code == 400
    assert "must be below --max-length" in _text(response)
    assert TrainingRun.objects.count() == 0


def test_a_value_that_is_not_a_number_is_shown_on_its_field(staff_client: Client, version: ModelVersion) -> None:
    response = staff_client.post("/training/runs/new/", _start_form(version, beta="strong"))
    assert response.status_code == 400
    assert "Enter a number." in _text(response)
    assert TrainingRun.objects.count() == 0


@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_with_redis_down_the_form_says_so_and_creates_nothing(staff_client: Client, version: ModelVersion) -> None:
    response = staff_client.post("/training/runs/new/", _start_form(version))
    assert response.status_code == 503
    assert "cannot be reached" in _text(response)
    assert TrainingRun.objects.count() == 0


# The run page ---------------------------------------------------------------------------


def _run_with_metrics(version: ModelVersion, steps: int = 4) -> TrainingRun:
    run = TrainingRun.objects.create(
        base_version=version,
        status=RunStatus.RUNNING,
        progress_step=steps,
        progress_total=10,
        eta_seconds=75,
        log_tail="step 4 loss 0.61\n<script>alert(1)</script>",
    )
    for step in range(1, steps + 1):
        TrainingMetric.objects.create(
            run=run,
            step=step,
            values={
                "loss": 0.69 - 0.02 * step,
                "rewards/accuracies": 0.5 + 0.1 * step,
                "rewards/margins": 0.01 * step,
                "rewards/chosen": 0.02 * step,
                "rewards/rejected": -0.01 * step,
                "learning_rate": 1e-6,
            },
        )
    return run


def _charts(page: str) -> dict[str, ET.Element]:
    """The page's SVG charts by their ``data-chart`` key, parsed as XML."""
    found = re.findall(r'<figure class="panel chart-panel" data-chart="([a-z]+)">.*?(<svg .*?</svg>)', page, re.S)
    return {key: ET.fromstring(svg) for key, svg in found}


def test_the_run_page_plots_the_stored_metrics(staff_client: Client, version: ModelVersion) -> None:
    run = _run_with_metrics(version, steps=4)
    charts = _charts(_text(staff_client.get(f"/training/runs/{run.pk}/")))
    assert set(charts) == {"loss", "accuracy", "margin", "rewards"}
    ns = "{http://www.w3.org/2000/svg}"
    loss_path = charts["loss"].find(f".//{ns}path")
    assert loss_path is not None
    assert len(re.findall(r"[ML]", loss_path.get("d", ""))) == 4
    reward_series = [g.get("data-label") for g in charts["rewards"].iter(f"{ns}g") if g.get("data-label")]
    assert reward_series == ["chosen", "rejected"]


def test_the_run_page_shows_progress_eta_and_latest_metrics(staff_client: Client, version: ModelVersion) -> None:
    run = _run_with_metrics(version, steps=4)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert '<progress max="100" value="40.0"' in page
    assert "step 4 of 10" in page
    assert '<strong data-testid="eta">1 min 15 s</strong>' in page
    assert "0.61" in page  # latest loss, 0.69 - 0.08


def test_the_log_tail_is_shown_as_text(staff_client: Client, version: ModelVersion) -> None:
    run = _run_with_metrics(version)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page


def test_a_queued_run_says_it_waits_for_a_worker(staff_client: Client, version: ModelVersion) -> None:
    run = TrainingRun.objects.create(base_version=version)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert "Waiting for a worker on the <code>gpu</code> queue" in page
    assert '<progress aria-label="Progress (waiting to start)"' in page


def test_a_running_run_polls_its_live_partial(staff_client: Client, version: ModelVersion) -> None:
    run = _run_with_metrics(version)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert f'hx-get="/training/runs/{run.pk}/live/" hx-trigger="every 2s" hx-swap="outerHTML"' in page


def test_the_live_partial_is_the_progress_and_curves_without_the_page(
    staff_client: Client, version: ModelVersion
) -> None:
    run = _run_with_metrics(version)
    response = staff_client.get(f"/training/runs/{run.pk}/live/", headers=HTMX)
    partial = _text(response)
    assert response.status_code == 200
    assert partial.lstrip().startswith('<div id="run-live"')
    assert "<html" not in partial
    assert "step 4 of 10" in partial
    assert set(_charts(partial)) == {"loss", "accuracy", "margin", "rewards"}


def test_a_finished_run_stops_polling(staff_client: Client, version: ModelVersion) -> None:
    run = _run_with_metrics(version)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    partial = _text(staff_client.get(f"/training/runs/{run.pk}/live/", headers=HTMX))
    assert "hx-trigger" not in partial
    assert '<progress max="100" value="100.0"' in partial


def test_the_run_page_shows_the_dataset_and_the_version_it_produced(
    staff_client: Client, version: ModelVersion
) -> None:
    comparisons = judged_preferences(2)
    run = TrainingRun.objects.create(
        base_version=version,
        status=RunStatus.SUCCEEDED,
        dataset_path="/runs/train-1/dataset.jsonl",
        dataset_sha256="ab" * 32,
        dataset_rows=2,
        dataset_filters={"since": None, "min_agreement": 0.5, "exclude_annotators": ["bot"]},
    )
    run.judgements.set(Judgement.objects.filter(comparison__in=comparisons))
    produced = ModelVersion.objects.create(name="tiny-base+dpo7", path="/runs/final", parent=version, trained_by=run)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert "/runs/train-1/dataset.jsonl" in page
    assert "ab" * 32 in page
    assert re.search(r"<dt>Pairs</dt><dd>2</dd>", page)
    assert re.search(r"<dt>Judgements</dt><dd>2</dd>", page)
    assert re.search(r"<dt>Min. agreement</dt><dd>0.5</dd>", page)
    assert f'<a href="/training/models/{produced.pk}/">tiny-base+dpo7</a>' in page


def test_a_failed_run_shows_its_error_and_traceback(staff_client: Client, version: ModelVersion) -> None:
    run = TrainingRun.objects.create(
        base_version=version,
        status=RunStatus.FAILED,
        error="ValueError: there are no decided comparisons to train on",
        traceback='Traceback (most recent call last):\n  File "services.py", line 1',
    )
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert "ValueError: there are no decided comparisons to train on" in page
    assert "Traceback (most recent call last):" in page
    assert 'data-testid="resume"' in page


def test_the_run_page_lists_every_setting_and_marks_the_changed_ones(
    staff_client: Client, version: ModelVersion
) -> None:
    run = TrainingRun.objects.create(base_version=version, hyperparameters={"beta": 0.5})
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert re.search(r'<tr class="changed">\s*<th scope="row"><code>beta</code></th>', page)
    assert re.search(r"<tr>\s*<th scope=\"row\"><code>lr</code></th>\s*<td><strong>1e-6</strong>", page)


# Cancel and resume ----------------------------------------------------------------------


def test_cancel_stops_a_queued_run(staff_client: Client, version: ModelVersion) -> None:
    run = services.training_run_start(base_version=version, hyperparameters={})
    response = staff_client.post(f"/training/runs/{run.pk}/cancel/")
    run.refresh_from_db()
    assert response.status_code == 302
    assert run.status == RunStatus.CANCELLED


def test_cancel_by_htmx_answers_with_the_live_partial(staff_client: Client, version: ModelVersion) -> None:
    run = _run_with_metrics(version)
    response = staff_client.post(f"/training/runs/{run.pk}/cancel/", headers=HTMX)
    run.refresh_from_db()
    assert run.cancel_requested
    assert "the worker stops after the current step" in _text(response)
    assert "Cancelling…" in _text(response)


def test_cancelling_a_finished_run_says_why_not(staff_client: Client, version: ModelVersion) -> None:
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.SUCCEEDED)
    response = staff_client.post(f"/training/runs/{run.pk}/cancel/", headers=HTMX)
    assert response.status_code == 409
    assert "has already succeeded" in _text(response)


# The job is enqueued when the run's transaction commits: a real commit is needed.
@pytest.mark.django_db(transaction=True)
def test_resume_queues_a_cancelled_run_again(
    staff_client: Client, version: ModelVersion
) -> None:
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.CANCELLED, error="cancelled from the page")
    response = staff_client.post(f"/training/runs/{run.pk}/resume/")
    run.refresh_from_db()
    assert response.status_code == 302
    assert (run.status, run.resumed_count, run.error) == (RunStatus.QUEUED, 1, "")
    assert run.rq_job_id


@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_resume_with_redis_down_says_so_and_changes_nothing(staff_client: Client, version: ModelVersion) -> None:
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.FAILED, error="boom")
    response = staff_client.post(f"/training/runs/{run.pk}/resume/", headers=HTMX)
    run.refresh_from_db()
    assert response.status_code == 409
    assert "cannot be reached" in _text(response)
    assert (run.status, run.resumed_count) == (RunStatus.FAILED, 0)


def test_cancel_needs_a_post(staff_client: Client, version: ModelVersion) -> None:
    run = _run_with_metrics(version)
    assert staff_client.get(f"/training/runs/{run.pk}/cancel/").status_code == 405


# Runs list ------------------------------------------------------------------------------


def test_the_runs_list_shows_training_and_generation_runs(
    staff_client: Client, version: ModelVersion, child: ModelVersion
) -> None:
    training = TrainingRun.objects.create(
        base_version=version, status=RunStatus.RUNNING, progress_step=3, progress_total=12
    )
    generation = GenerationRun.objects.create(model_version=child, status=RunStatus.SUCCEEDED, comparisons_created=5)
    page = _text(staff_client.get("/training/"))
    assert f'<a href="/training/runs/{training.pk}/">#{training.pk}</a>' in page
    assert "3/12" in page
    assert f'<a href="/training/generations/{generation.pk}/">#{generation.pk}</a>' in page
    assert re.search(r'<td class="num">5</td>', page)


# Model versions and generation ----------------------------------------------------------


def test_the_versions_page_shows_each_parent_and_the_run_that_made_it(
    staff_client: Client, version: ModelVersion
) -> None:
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.SUCCEEDED)
    ModelVersion.objects.create(name="tiny-base+dpo9", path="/x", parent=version, trained_by=run)
    page = _text(staff_client.get("/training/models/"))
    assert re.search(r"tiny-base\+dpo9</a></span></td>\s*<td><a href=\"/training/models/\d+/\">tiny-base</a>", page)
    assert f'<a href="/training/runs/{run.pk}/">training run #{run.pk}</a>' in page


def test_the_version_page_shows_its_lineage(staff_client: Client, child: ModelVersion) -> None:
    grandchild = ModelVersion.objects.create(name="tiny-base+dpo2", path="/y", parent=child)
    page = _text(staff_client.get(f"/training/models/{grandchild.pk}/"))
    lineage = re.search(r'data-testid="lineage">(.*?)</dd>', page)
    assert lineage is not None
    assert re.sub(r"<[^>]+>", "", lineage.group(1)) == "tiny-base → tiny-base+dpo1 → tiny-base+dpo2"


# The job is enqueued when the run's transaction commits: a real commit is needed.
@pytest.mark.django_db(transaction=True)
def test_the_generation_form_queues_a_round_and_opens_its_page(
    staff_client: Client, child: ModelVersion
) -> None:
    response = staff_client.post(
        f"/training/models/{child.pk}/",
        _generation_form(prompts="tag", tag="math", n="2", temperature="1.0", top_p="0.9", max_prompts="10"),
    )
    run = GenerationRun.objects.get()
    assert response["Location"] == f"/training/generations/{run.pk}/"
    assert (run.model_version, run.status, run.pairing, run.prompts, run.tag) == (
        child,
        RunStatus.QUEUED,
        "parent",
        "tag",
        "math",
    )
    assert (run.n, run.temperature, run.top_p, run.max_new_tokens, run.max_prompts) == (2, 1.0, 0.9, 8, 10)
    assert run.rq_job_id


def test_the_generation_form_shows_the_services_error(staff_client: Client, version: ModelVersion) -> None:
    response = staff_client.post(f"/training/models/{version.pk}/", _generation_form(pairing="parent"))
    assert response.status_code == 400
    assert "has no parent version" in _text(response)
    assert GenerationRun.objects.count() == 0


def test_a_version_without_parent_defaults_to_pairing_its_own_samples(
    staff_client: Client, version: ModelVersion
) -> None:
    page = _text(staff_client.get(f"/training/models/{version.pk}/"))
    assert re.search(r'value="self"[^>]*checked', page)
    assert re.search(r'name="n" value="2"', page)


@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_generation_with_redis_down_says_so_and_creates_nothing(staff_client: Client, child: ModelVersion) -> None:
    response = staff_client.post(f"/training/models/{child.pk}/", _generation_form())
    assert response.status_code == 503
    assert "cannot be reached" in _text(response)
    assert GenerationRun.objects.count() == 0


def test_the_generation_page_polls_until_the_round_ends(staff_client: Client, child: ModelVersion) -> None:
    run = GenerationRun.objects.create(
        model_version=child, status=RunStatus.RUNNING, progress_step=3, progress_total=6
    )
    page = _text(staff_client.get(f"/training/generations/{run.pk}/"))
    assert f'hx-get="/training/generations/{run.pk}/live/" hx-trigger="every 2s"' in page
    assert "prompt 3 of 6" in page
    GenerationRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, comparisons_created=6)
    partial = _text(staff_client.get(f"/training/generations/{run.pk}/live/", headers=HTMX))
    assert "hx-trigger" not in partial
    assert '<div class="value" data-testid="comparisons-created">6</div>' in partial


def test_cancel_stops_a_queued_generation(staff_client: Client, child: ModelVersion) -> None:
    run = services.generation_run_start(model_version=child, max_new_tokens=8)
    staff_client.post(f"/training/generations/{run.pk}/cancel/")
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


# The loop -------------------------------------------------------------------------------


def test_next_round_queues_training_then_a_chained_generation(staff_client: Client, child: ModelVersion) -> None:
    response = staff_client.post(f"/training/models/{child.pk}/next-round/")
    train_run = TrainingRun.objects.get()
    gen_run = GenerationRun.objects.get()
    assert response["Location"] == f"/training/runs/{train_run.pk}/"
    assert (train_run.base_version, train_run.status) == (child, RunStatus.QUEUED)
    assert (gen_run.after_training, gen_run.status, gen_run.pairing) == (train_run, RunStatus.QUEUED, "parent")


def test_next_round_trains_on_the_judgements_since_the_last_run(
    staff_client: Client, version: ModelVersion, child: ModelVersion
) -> None:
    last = TrainingRun.objects.create(base_version=version, status=RunStatus.SUCCEEDED)
    staff_client.post(f"/training/models/{child.pk}/next-round/")
    new = TrainingRun.objects.exclude(pk=last.pk).get()
    assert new.dataset_filters["since"] == last.created_at.isoformat()


@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_next_round_with_redis_down_says_so_and_creates_nothing(staff_client: Client, child: ModelVersion) -> None:
    response = staff_client.post(f"/training/models/{child.pk}/next-round/", follow=True)
    assert "cannot be reached" in _text(response)
    assert TrainingRun.objects.count() == GenerationRun.objects.count() == 0


# Leaderboard ----------------------------------------------------------------------------


def test_the_leaderboard_shows_ratings_win_rate_against_the_parent_and_position_bias(
    staff_client: Client, child: ModelVersion
) -> None:
    from annotate import services as annotate_services
    from tests.annotate.factories import ComparisonFactory, CompletionFactory, PromptFactory

    judge = UserFactory()
    for index in range(4):
        prompt = PromptFactory()
        comparison = ComparisonFactory(
            prompt=prompt,
            completion_a=CompletionFactory(prompt=prompt, model_name=child.name, model_version=child),
            completion_b=CompletionFactory(prompt=prompt, model_name="tiny-base", model_version=child.parent),
        )
        # The child wins three of four, shown on the left twice and on the right once.
        choice = ["left", "right", "left", "tie"][index]
        left, right = (
            (comparison.completion_a_id, comparison.completion_b_id)
            if index != 1
            else (comparison.completion_b_id, comparison.completion_a_id)
        )
        annotate_services.judgement_record(
            annotator=judge, comparison_id=comparison.id, left_id=left, right_id=right, choice=choice
        )
    page = _text(staff_client.get("/training/leaderboard/"))
    assert '<div class="value" data-testid="board-judgements">4</div>' in page
    assert re.search(r"tiny-base\+dpo1</a>.*?<strong>100%</strong>", page, re.S)
    assert "3 / 0 / 1" in page
    assert '<div class="value" data-testid="position-bias">67%</div>' in page
