"""The staff's training pages: access, starting and watching runs, cancel/resume, generation, the loop."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.test import Client, override_settings
from django.utils.html import escape

from annotate.models import Judgement
from config.artifacts import artifact_store
from tests.annotate.factories import CampaignFactory, StaffFactory, UserFactory
from tests.training.factories import judged_preferences
from training import services
from training.charts import format_number
from training.models import GenerationRun, GenerationShard, ModelVersion, RunStatus, TrainingMetric, TrainingRun

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
        "optimizer": "",
        "lr": "",
        "warmup_steps": "",
        "batch_size": "",
        "grad_accum": "",
        "epochs": "",
        "max_length": "512",
        "max_prompt_length": "256",
        "lora_r": "0",
        "lora_alpha": "16",
        "sft_weight": "0",
        "max_grad_norm": "10",
        "seed": "42",
        "save_every": "0",
        "save_every_minutes": "5",
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
    for name, value in (("beta", "0.1"), ("max_length", "512"), ("lora_r", "0")):
        assert re.search(rf'name="{name}" value="{re.escape(value)}"', page), name


@pytest.mark.parametrize("name", ["lr", "warmup_steps", "epochs", "batch_size", "grad_accum"])
def test_the_schedule_fields_start_empty_as_auto(staff_client: Client, version: ModelVersion, name: str) -> None:
    page = _text(staff_client.get("/training/runs/new/"))
    field = re.search(rf'<input [^>]*name="{name}"[^>]*>', page)
    assert field is not None
    assert 'placeholder="auto"' in field.group(0)
    assert "value=" not in field.group(0)


def test_the_optimiser_starts_at_auto(staff_client: Client, version: ModelVersion) -> None:
    page = _text(staff_client.get("/training/runs/new/"))
    assert re.search(r'<select name="optimizer"[^>]*>\s*<option value="" selected>auto</option>', page)


def test_a_run_started_with_the_auto_fields_empty_stores_none_of_them(
    staff_client: Client, version: ModelVersion
) -> None:
    staff_client.post("/training/runs/new/", _start_form(version))
    assert TrainingRun.objects.get().hyperparameters == {}


def test_a_filled_schedule_field_is_stored_even_at_the_papers_value(
    staff_client: Client, version: ModelVersion
) -> None:
    staff_client.post("/training/runs/new/", _start_form(version, optimizer="rmsprop", epochs="1"))
    assert TrainingRun.objects.get().hyperparameters == {"optimizer": "rmsprop", "epochs": 1}


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
        "include_evaluation": False,
        "campaign": None,
        "include_flagged": False,
        "exclude_rushed": False,
    }


def test_the_run_keeps_the_quality_options_of_the_form(staff_client: Client, version: ModelVersion) -> None:
    CampaignFactory(slug="helpful")
    staff_client.post(
        "/training/runs/new/", _start_form(version, campaign="helpful", include_flagged="on", exclude_rushed="on")
    )
    filters = TrainingRun.objects.get().dataset_filters
    assert (filters["campaign"], filters["include_flagged"], filters["exclude_rushed"]) == ("helpful", True, True)


def test_an_unknown_campaign_on_the_run_form_starts_nothing(staff_client: Client, version: ModelVersion) -> None:
    response = staff_client.post("/training/runs/new/", _start_form(version, campaign="nowhere"))
    assert response.status_code == 400
    assert not TrainingRun.objects.exists()


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


# The schedule preview -------------------------------------------------------------------


def _preview(client: Client, version: ModelVersion, **changes: object) -> str:
    return _text(client.get("/training/runs/new/preview/", _start_form(version, **changes), headers=HTMX))


def _fact(page: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">(.*?)</dd>', page)
    assert found is not None, testid
    return found.group(1)


@pytest.mark.parametrize(("decided", "held"), [(12, 0), (39, 0), (40, 8), (100, 10)])
def test_the_preview_counts_the_pairs_holds_out_a_share_and_shows_the_engines_schedule(
    staff_client: Client, version: ModelVersion, decided: int, held: int
) -> None:
    from dpo_engine.config import resolve_schedule

    judged_preferences(decided)
    page = _preview(staff_client, version)
    schedule = resolve_schedule(pairs=decided - held)
    assert (_fact(page, "preview-decided"), _fact(page, "preview-heldout")) == (str(decided), str(held or "none"))
    assert _fact(page, "preview-pairs") == str(decided - held)
    assert _fact(page, "schedule-steps") == str(schedule.total_steps)
    assert _fact(page, "schedule-batch").startswith(f"{schedule.effective_batch} pairs")
    assert escape(schedule.notes[0]) in page


def test_the_preview_says_when_too_few_pairs_leave_none_held_out(staff_client: Client, version: ModelVersion) -> None:
    judged_preferences(5)
    assert 'data-testid="preview-no-heldout"' in _preview(staff_client, version)


def test_a_field_filled_in_wins_over_the_engines_choice(staff_client: Client, version: ModelVersion) -> None:
    judged_preferences(12)
    page = _preview(staff_client, version, epochs="5", batch_size="3", grad_accum="1")
    assert _fact(page, "schedule-steps") == str(5 * 4)


def test_the_preview_resolves_the_schedule_for_the_processes_asked_for(
    staff_client: Client, version: ModelVersion
) -> None:
    judged_preferences(12)
    page = _preview(staff_client, version, processes="2", batch_size="3", grad_accum="1", epochs="1")
    assert _fact(page, "schedule-steps") == "2", "12 pairs in steps of 3 pairs on each of 2 processes"
    assert _fact(page, "schedule-batch").startswith("6 pairs (3 × 1 accumulation × 2 processes)")  # noqa: RUF001


def test_the_preview_follows_the_judgement_filter(staff_client: Client, version: ModelVersion) -> None:
    judged_preferences(12)
    judge = Judgement.objects.first().annotator.username
    assert _fact(_preview(staff_client, version, exclude_annotators=f"{judge}, nobody"), "preview-decided") == "0"


def test_the_preview_without_pairs_says_the_run_would_have_nothing_to_train_on(
    staff_client: Client, version: ModelVersion
) -> None:
    assert "the run would have nothing to train on" in _preview(staff_client, version)


def test_the_preview_shows_why_the_settings_would_be_refused(staff_client: Client, version: ModelVersion) -> None:
    judged_preferences(2)
    page = _preview(staff_client, version, max_prompt_length="512")
    assert "must be below --max-length" in page
    assert 'data-testid="schedule"' not in page


def test_the_start_form_shows_the_preview_and_redraws_it_on_every_change(
    staff_client: Client, version: ModelVersion
) -> None:
    judged_preferences(3)
    page = _text(staff_client.get("/training/runs/new/"))
    assert re.search(r'hx-get="/training/runs/new/preview/" hx-trigger="change" hx-target="#schedule-preview"', page)
    assert _fact(page, "preview-pairs") == "3"


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
    run = TrainingRun.objects.create(base_version=version, hyperparameters={"beta": 0.5, "epochs": 2})
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert re.search(r'<tr class="changed">\s*<th scope="row"><code>beta</code></th>', page)
    assert re.search(r"<code>epochs</code></th>\s*<td><strong>2</strong> <span [^>]*>\(default auto\)", page)
    assert re.search(r"<tr>\s*<th scope=\"row\"><code>max_grad_norm</code></th>\s*<td><strong>10</strong>", page)
    assert re.search(r"<code>lr</code></th>\s*<td><strong>auto</strong> <span[^>]*>\(resolved when the run", page)


def test_held_out_evaluations_are_drawn_beside_the_training_curves(staff_client: Client, version: ModelVersion) -> None:
    run = _run_with_metrics(version, steps=4)
    for step, accuracy in ((0, 0.0), (2, 0.5), (4, 1.0)):
        values = {"eval/rewards/accuracies": accuracy, "eval/rewards/margins": 0.1 * step, "eval/loss": 0.7}
        TrainingMetric.objects.create(run=run, split="eval", step=step, values=values)
    charts = _charts(_text(staff_client.get(f"/training/runs/{run.pk}/")))
    ns = "{http://www.w3.org/2000/svg}"
    for key in ("accuracy", "margin", "loss"):
        series = {g.get("data-label"): g.find(f"{ns}path") for g in charts[key].iter(f"{ns}g") if g.get("data-label")}
        assert set(series) == {"training", "held-out"}, key
        assert len(re.findall(r"[ML]", series["held-out"].get("d", ""))) == 3, key


def test_the_latest_metrics_are_the_last_training_step_not_an_evaluation(
    staff_client: Client, version: ModelVersion
) -> None:
    run = _run_with_metrics(version, steps=4)
    TrainingMetric.objects.create(run=run, split="eval", step=5, values={"eval/loss": 9.5})
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    latest = re.search(r'aria-label="Latest metrics">(.*?)</section>', page, re.S)
    assert latest is not None
    assert "4 logged steps" in page
    assert "0.61" in latest.group(1)
    assert "9.5" not in latest.group(1)


def test_the_run_page_shows_held_out_scores_before_and_after(staff_client: Client, version: ModelVersion) -> None:
    run = TrainingRun.objects.create(
        base_version=version,
        status=RunStatus.SUCCEEDED,
        eval_before={"eval/rewards/accuracies": 0.0, "eval/rewards/margins": 0.0, "eval/loss": 0.6931},
        eval_after={"eval/rewards/accuracies": 0.75, "eval/rewards/margins": 0.42, "eval/loss": 0.51},
    )
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    table = re.search(r'data-testid="eval-table">(.*?)</table>', page, re.S)
    assert table is not None
    cells = [re.sub(r"<[^>]+>", "", row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))]
    assert cells == ["MetricBeforeAfter", "Held-out accuracy0%75%", "Held-out margin00.42", "Held-out loss0.6930.51"]


def test_the_run_page_and_log_repeat_the_resolved_schedule(staff_client: Client, version: ModelVersion) -> None:
    from dpo_engine.config import resolve_schedule

    schedule = resolve_schedule(pairs=36).to_json()
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.RUNNING, schedule=schedule)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert _fact(page, "schedule-steps") == str(schedule["total_steps"])
    lr = format_number(schedule["lr"])
    assert re.search(rf'<code>lr</code></th>\s*<td><strong>{lr}</strong> <span class="muted small">\(auto\)', page)


def test_a_run_that_did_not_learn_says_why_and_offers_its_round_anyway(
    staff_client: Client, version: ModelVersion
) -> None:
    run = TrainingRun.objects.create(
        base_version=version, status=RunStatus.SUCCEEDED, learned=False, verdict="It did not learn: 25% is low."
    )
    ModelVersion.objects.create(name="tiny-base+dpo3", path="/runs/final", parent=version, trained_by=run)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert '<span class="badge badge-did-not-learn" data-testid="did-not-learn"' in page
    assert "It did not learn: 25% is low." in page
    assert 'data-testid="generate-anyway">Generate the round anyway</button>' in page


def test_a_run_that_learned_offers_no_round_anyway(staff_client: Client, version: ModelVersion) -> None:
    run = TrainingRun.objects.create(
        base_version=version, status=RunStatus.SUCCEEDED, learned=True, verdict="It learned: 90%."
    )
    ModelVersion.objects.create(name="tiny-base+dpo4", path="/runs/final", parent=version, trained_by=run)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert "It learned: 90%." in page
    assert 'data-testid="did-not-learn"' not in page
    assert 'data-testid="generate-anyway"' not in page


def test_the_runs_list_marks_a_run_that_did_not_learn(staff_client: Client, version: ModelVersion) -> None:
    TrainingRun.objects.create(base_version=version, status=RunStatus.SUCCEEDED, learned=False, verdict="low")
    assert 'data-testid="did-not-learn"' in _text(staff_client.get("/training/"))


# The job is enqueued when the run's transaction commits: a real commit is needed.
@pytest.mark.django_db(transaction=True)
def test_generate_anyway_queues_the_produced_version_against_its_parent(
    staff_client: Client, version: ModelVersion
) -> None:
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.SUCCEEDED, learned=False, verdict="low")
    produced = ModelVersion.objects.create(name="tiny-base+dpo5", path="/runs/final", parent=version, trained_by=run)
    response = staff_client.post(f"/training/runs/{run.pk}/generate-anyway/")
    gen_run = GenerationRun.objects.get()
    assert response["Location"] == f"/training/generations/{gen_run.pk}/"
    assert (gen_run.model_version, gen_run.pairing, gen_run.status) == (produced, "parent", RunStatus.QUEUED)
    assert gen_run.rq_job_id
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert 'data-testid="generate-anyway"' not in page, "one round at a time"


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


def test_generate_anyway_refuses_a_run_that_learned(staff_client: Client, version: ModelVersion) -> None:
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.SUCCEEDED, learned=True, verdict="ok")
    ModelVersion.objects.create(name="tiny-base+dpo6", path="/runs/final", parent=version, trained_by=run)
    response = staff_client.post(f"/training/runs/{run.pk}/generate-anyway/", follow=True)
    assert "Round not started: only a finished run that did not learn holds its round back" in _text(response)
    assert GenerationRun.objects.count() == 0


def test_a_run_without_a_stored_checkpoint_offers_to_restart_from_step_0(
    staff_client: Client, version: ModelVersion
) -> None:
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.FAILED)
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert 'data-testid="resume">Restart from step 0</button>' in page


def test_a_run_with_checkpoints_offers_to_resume_from_the_newest(
    staff_client: Client, version: ModelVersion, tmp_path
) -> None:
    run = TrainingRun.objects.create(base_version=version, status=RunStatus.CANCELLED)
    for step in (3, 6, 9):
        folder = tmp_path / f"step-{step:08d}"
        folder.mkdir(parents=True)
        (folder / "state.json").write_text(f'{{"step": {step}}}')
        artifact_store().put_dir(folder, f"{run.store_key}/checkpoints/{folder.name}")
    # Step 9's upload has not finished: a folder without its manifest is no checkpoint yet.
    artifact_store().remove(f"{run.store_key}/checkpoints/step-00000009/MANIFEST.json")
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert 'data-testid="resume">Resume from checkpoint (step 6)</button>' in page


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


def test_the_generation_page_shows_each_shard_with_its_worker(staff_client: Client, child: ModelVersion) -> None:
    run = GenerationRun.objects.create(model_version=child, status=RunStatus.RUNNING, progress_total=32)
    GenerationShard.objects.create(
        run=run, index=0, prompt_ids=list(range(16)), status=RunStatus.RUNNING, prompts_done=16, attempts=2,
        worker_name="w-gpu-a", host="gpu-a",
    )
    GenerationShard.objects.create(run=run, index=1, prompt_ids=list(range(16, 32)))
    partial = _text(staff_client.get(f"/training/generations/{run.pk}/live/", headers=HTMX))
    rows = re.findall(r'<tr data-testid="shard">(.*?)</tr>', partial, re.S)
    assert len(rows) == 2
    assert all(cell in rows[0] for cell in ("Running", "16/16", "w-gpu-a", "gpu-a", "<td class=\"num\">2</td>"))
    assert "Queued" in rows[1]
    assert "0/16" in rows[1]


def test_cancel_stops_a_queued_generation(staff_client: Client, child: ModelVersion) -> None:
    run = services.generation_run_start(model_version=child, max_new_tokens=8)
    staff_client.post(f"/training/generations/{run.pk}/cancel/")
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_a_failed_generation_offers_resume_with_what_it_kept(staff_client: Client, child: ModelVersion) -> None:
    run = GenerationRun.objects.create(
        model_version=child, status=RunStatus.FAILED, progress_step=32, progress_total=48,
        completions_created=32, comparisons_created=32,
    )
    page = _text(staff_client.get(f"/training/generations/{run.pk}/"))
    assert "Resume (32 of 48 prompts done)" in page
    assert '<div class="value" data-testid="comparisons-created">32</div>' in page


# The job is enqueued when the run's transaction commits: a real commit is needed.
@pytest.mark.django_db(transaction=True)
def test_resume_queues_a_failed_generation_again(staff_client: Client, child: ModelVersion) -> None:
    run = GenerationRun.objects.create(model_version=child, status=RunStatus.FAILED, error="the worker stopped")
    response = staff_client.post(f"/training/generations/{run.pk}/resume/", headers=HTMX)
    run.refresh_from_db()
    assert response.status_code == 200
    assert "Queued again" in _text(response)
    assert (run.status, run.error) == (RunStatus.QUEUED, "")
    assert run.rq_job_id


def test_resume_of_a_running_generation_is_refused(staff_client: Client, child: ModelVersion) -> None:
    run = GenerationRun.objects.create(model_version=child, status=RunStatus.RUNNING)
    response = staff_client.post(f"/training/generations/{run.pk}/resume/", headers=HTMX)
    assert response.status_code == 409
    assert "Not resumed: only a failed or cancelled round can be resumed" in _text(response)


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


def test_a_child_versions_page_offers_an_evaluation_round(staff_client: Client, child: ModelVersion) -> None:
    assert 'data-testid="evaluation-round"' in staff_client.get(f"/training/models/{child.pk}/").content.decode()


def test_a_version_without_a_parent_offers_no_evaluation_round(staff_client: Client, version: ModelVersion) -> None:
    assert 'data-testid="evaluation-round"' not in staff_client.get(f"/training/models/{version.pk}/").content.decode()


def test_the_evaluation_round_button_queues_the_child_against_its_parent_on_the_eval_prompts(
    staff_client: Client, child: ModelVersion
) -> None:
    from tests.annotate.factories import PromptFactory

    PromptFactory(tags=["eval"])
    response = staff_client.post(f"/training/models/{child.pk}/evaluation-round/")
    run = GenerationRun.objects.get()
    assert response["Location"] == f"/training/generations/{run.pk}/"
    assert (run.model_version, run.purpose, run.pairing, run.tag) == (child, "evaluation", "parent", "eval")


def test_the_evaluation_round_button_without_eval_prompts_says_so_and_queues_nothing(
    staff_client: Client, child: ModelVersion
) -> None:
    response = staff_client.post(f"/training/models/{child.pk}/evaluation-round/", follow=True)
    assert "no prompts are tagged" in _text(response)
    assert not GenerationRun.objects.exists()


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
        annotate_services.judgement_record_scripted(
            annotator=judge, comparison_id=comparison.id, left_id=left, right_id=right, choice=choice
        )
    page = _text(staff_client.get("/training/leaderboard/"))
    assert '<div class="value" data-testid="board-judgements">4</div>' in page
    assert re.search(r"tiny-base\+dpo1</a>.*?<strong>100%</strong>", page, re.S)
    assert "3 / 0 / 1" in page
    assert '<div class="value" data-testid="position-bias">67%</div>' in page


def test_the_leaderboard_counts_only_the_campaign_asked(staff_client: Client, child: ModelVersion) -> None:
    from annotate import services as annotate_services
    from tests.annotate.factories import CampaignFactory, ComparisonFactory, CompletionFactory, PromptFactory

    CampaignFactory(slug="helpful")
    prompt = PromptFactory()
    comparison = ComparisonFactory(
        prompt=prompt,
        completion_a=CompletionFactory(prompt=prompt, model_name=child.name, model_version=child),
        completion_b=CompletionFactory(prompt=prompt, model_name="tiny-base", model_version=child.parent),
    )
    annotate_services.judgement_record_scripted(
        annotator=UserFactory(), comparison_id=comparison.id, left_id=comparison.completion_a_id,
        right_id=comparison.completion_b_id, choice="left",
    )
    everywhere = _text(staff_client.get("/training/leaderboard/"))
    in_helpful = _text(staff_client.get("/training/leaderboard/?campaign=helpful"))
    assert '<div class="value" data-testid="board-judgements">1</div>' in everywhere
    assert '<div class="value" data-testid="board-judgements">0</div>' in in_helpful


@pytest.mark.django_db(transaction=True)
def test_the_generation_form_queues_a_round_in_the_campaign_chosen(staff_client: Client, child: ModelVersion) -> None:
    from tests.annotate.factories import CampaignFactory

    campaign = CampaignFactory(slug="helpful")
    staff_client.post(f"/training/models/{child.pk}/", _generation_form(campaign="helpful"))
    assert GenerationRun.objects.get().campaign == campaign


def test_next_round_in_a_campaign_keeps_it(staff_client: Client, child: ModelVersion) -> None:
    from tests.annotate.factories import CampaignFactory

    campaign = CampaignFactory(slug="helpful")
    staff_client.post(f"/training/models/{child.pk}/next-round/", {"campaign": "helpful"})
    assert TrainingRun.objects.get().dataset_filters["campaign"] == "helpful"
    assert GenerationRun.objects.get().campaign == campaign


def test_next_round_in_an_unknown_campaign_says_so_and_creates_nothing(
    staff_client: Client, child: ModelVersion
) -> None:
    response = staff_client.post(f"/training/models/{child.pk}/next-round/", {"campaign": "nope"}, follow=True)
    assert "no campaign with slug" in _text(response)
    assert not TrainingRun.objects.exists()


# A dead worker's run ---------------------------------------------------------------------


def _stale(run: TrainingRun | GenerationRun) -> None:
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    beat = timezone.now() - timedelta(seconds=settings.DUET_HEARTBEAT_TIMEOUT + 1)
    type(run).objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=beat, heartbeat_at=beat)


def test_reading_a_run_whose_worker_died_fails_it(staff_client: Client, version: ModelVersion) -> None:
    run = TrainingRun.objects.create(base_version=version, hyperparameters={})
    _stale(run)
    response = staff_client.get(f"/training/runs/{run.pk}/live/", headers=HTMX)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "stopped answering" in _text(response)


def test_reading_a_generation_round_whose_worker_died_fails_it(staff_client: Client, child: ModelVersion) -> None:
    run = GenerationRun.objects.create(model_version=child, n=1, pairing=GenerationRun.Pairing.PARENT)
    _stale(run)
    staff_client.get(f"/training/generations/{run.pk}/")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


@pytest.mark.django_db(transaction=True)
def test_the_start_form_asks_for_gpus_per_run_and_the_run_page_shows_them(
    staff_client: Client, version: ModelVersion
) -> None:
    assert "GPUs per run (processes)" in _text(staff_client.get("/training/runs/new/"))
    staff_client.post("/training/runs/new/", _start_form(version, processes="2"))
    run = TrainingRun.objects.get()
    assert run.processes == 2
    page = _text(staff_client.get(f"/training/runs/{run.pk}/"))
    assert re.search(r'data-testid="processes">2 processes \(GPUs per run\)', page)


def test_the_start_form_refuses_more_processes_than_the_limit(staff_client: Client, version: ModelVersion) -> None:
    response = staff_client.post("/training/runs/new/", _start_form(version, processes="99"))
    assert response.status_code == 400
    assert not TrainingRun.objects.exists()
