"""The staff's training pages: runs, starting and watching a run, model versions, generation rounds.

Each view parses the request, calls one service or selector, and renders. A run's page polls its
live partial through htmx every two seconds while the run is queued or running; the partial it
gets back for a finished run carries no trigger, so the polling stops by itself. Every form also
works as a plain POST with a redirect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse, HttpResponseBase, HttpResponseNotFound
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate import selectors as annotate_selectors
from annotate import services as annotate_services
from annotate.filters import JudgementFilter
from config.auth import AuthedRequest, staff_required
from training import downloads, selectors, services
from training.evaluation import HELDOUT_MIN, HELDOUT_MIN_PAIRS
from training.forms import GenerationRunForm, TrainingRunForm
from training.leaderboard import leaderboard
from training.models import GenerationRun, ModelVersion, TrainingRun

POLL_SECONDS = 2


def _messages(request: AuthedRequest) -> list[tuple[str, str]]:
    return [(str(m), m.level_tag or "info") for m in messages.get_messages(request)]


# Runs -----------------------------------------------------------------------------------


@staff_required
@require_GET
def runs_page(request: AuthedRequest) -> HttpResponse:
    services.runs_reap_stale()  # where every worker died, looking at the runs is what fails theirs
    context = {"overview": selectors.runs_overview(), "section": "training", "flashes": _messages(request)}
    return render(request, "training/runs.html", context)


@staff_required
@require_http_methods(["GET", "POST"])
def training_run_new(request: AuthedRequest) -> HttpResponseBase:
    if request.method == "GET":
        return _render_start_form(request, TrainingRunForm())
    form = TrainingRunForm(request.POST)
    if not form.is_valid():
        return _render_start_form(request, form, status=400)
    try:
        run = services.training_run_start(
            base_version=form.cleaned_data["base_version"],
            hyperparameters=form.hyperparameters(),
            judgement_filter=form.judgement_filter(),
            user=request.user,
            processes=form.cleaned_data["processes"],
        )
    except services.QueueUnavailable as exc:
        form.add_error(None, f"Not started: {exc}")
        return _render_start_form(request, form, status=503)
    except ValueError as exc:
        form.add_error(None, f"Not started: {exc}")
        return _render_start_form(request, form, status=400)
    messages.success(request, f"{run} is queued; a worker on the gpu queue picks it up.")
    return redirect("training:run", run_id=run.pk)


def _render_start_form(request: AuthedRequest, form: TrainingRunForm, *, status: int = 200) -> HttpResponse:
    context = {
        "form": form, "section": "training", "preview": _preview(form),
        "heldout_min_pairs": HELDOUT_MIN_PAIRS, "heldout_min": HELDOUT_MIN,
    }
    return render(request, "training/run_new.html", context, status=status)


def _preview(form: TrainingRunForm) -> selectors.SchedulePreview | None:
    """What the filled-in form would train on and how; None while a field is invalid (its error shows)."""
    if not form.is_bound:
        form = TrainingRunForm(form.initial)
    if not form.is_valid():
        return None
    return selectors.training_schedule_preview(
        judgement_filter=form.judgement_filter(), hyperparameters=form.hyperparameters(),
        processes=form.cleaned_data["processes"],
    )


@staff_required
@require_GET
def training_run_preview(request: AuthedRequest) -> HttpResponse:
    """The start form's schedule preview, for htmx as the filter and the fields change."""
    context = {"preview": _preview(TrainingRunForm(request.GET))}
    return render(request, "training/_schedule_preview.html", context)


def _training_context(request: AuthedRequest, run_id: int, **extra: Any) -> dict[str, Any]:
    services.runs_reap_stale()
    return {
        "detail": selectors.training_run_detail(run_id=run_id),
        "poll_seconds": POLL_SECONDS,
        "section": "training",
        "flashes": _messages(request),
        **extra,
    }


@staff_required
@require_GET
def training_run_page(request: AuthedRequest, run_id: int) -> HttpResponse:
    return render(request, "training/run.html", _training_context(request, run_id))


@staff_required
@require_GET
def training_run_live(request: AuthedRequest, run_id: int) -> HttpResponse:
    """The part of the run page that changes while it trains; htmx polls it."""
    return render(request, "training/_run_live.html", _training_context(request, run_id))


def _after_run_action(
    request: AuthedRequest, run: TrainingRun | GenerationRun, *, message: str, level: str, status: int = 200
) -> HttpResponseBase:
    """Answer htmx with the fresh live partial and its message, a plain POST with a redirect.

    A refusal answers htmx with 409, which base.html's htmx config swaps in (it swaps no 5xx).
    """
    is_training = isinstance(run, TrainingRun)
    if not request.htmx:
        messages.add_message(request, messages.SUCCESS if level == "success" else messages.ERROR, message)
        return redirect("training:run" if is_training else "training:generation", run_id=run.pk)
    flashes = [(message, level)]
    if is_training:
        context = _training_context(request, run.pk, flashes=flashes)
        return render(request, "training/_run_live.html", context, status=status)
    context = _generation_context(request, run.pk, flashes=flashes)
    return render(request, "training/_generation_live.html", context, status=status)


@staff_required
@require_POST
def training_run_cancel(request: AuthedRequest, run_id: int) -> HttpResponseBase:
    return _cancel(request, get_object_or_404(TrainingRun, pk=run_id), stops_after="the current step")


def _cancel(request: AuthedRequest, run: TrainingRun | GenerationRun, *, stops_after: str) -> HttpResponseBase:
    try:
        services.training_run_cancel(run=run)
    except services.RunStateError as exc:
        return _after_run_action(request, run, message=f"Not cancelled: {exc}.", level="error", status=409)
    message = "Cancelled." if run.is_finished else f"Cancelling: the worker stops after {stops_after}."
    return _after_run_action(request, run, message=message, level="success")


@staff_required
@require_POST
def training_run_resume(request: AuthedRequest, run_id: int) -> HttpResponseBase:
    run = get_object_or_404(TrainingRun, pk=run_id)
    refused = _resume_refused(request, run, lambda: services.training_run_resume(run=run))
    if refused is not None:
        return refused
    step = selectors.newest_checkpoint_step(run)
    where = f"it continues from its checkpoint at step {step}" if step is not None else (
        "it has no checkpoint in the artifact store, so it restarts from step 0"
    )
    return _after_run_action(request, run, message=f"Queued again: {where}.", level="success")


def _resume_refused(
    request: AuthedRequest, run: TrainingRun | GenerationRun, resume: Callable[[], object]
) -> HttpResponseBase | None:
    """Queue ``run`` again through ``resume``; the page that says why when it cannot be, else None."""
    try:
        resume()
    except services.QueueUnavailable as exc:
        return _after_run_action(request, run, message=f"Not resumed: {exc}", level="error", status=409)
    except services.RunStateError as exc:
        return _after_run_action(request, run, message=f"Not resumed: {exc}.", level="error", status=409)
    return None


@staff_required
@require_POST
def training_run_generate_anyway(request: AuthedRequest, run_id: int) -> HttpResponseBase:
    """Start the round a run that did not learn held back, with the version it produced."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        gen_run = services.generation_run_start_anyway(run=run, user=request.user)
    except (services.QueueUnavailable, ValueError) as exc:
        messages.error(request, f"Round not started: {exc}")
        return redirect("training:run", run_id=run.pk)
    messages.success(request, f"{gen_run} is queued with {gen_run.model_version.name}, though its run did not learn.")
    return redirect("training:generation", run_id=gen_run.pk)


# Generation runs ------------------------------------------------------------------------


def _generation_context(request: AuthedRequest, run_id: int, **extra: Any) -> dict[str, Any]:
    services.runs_reap_stale()
    run = selectors.generation_run_detail(run_id=run_id)
    return {
        "run": run,
        "shards": selectors.generation_shards(run=run),
        "poll_seconds": POLL_SECONDS,
        "section": "training",
        "flashes": _messages(request),
        **extra,
    }


@staff_required
@require_GET
def generation_run_page(request: AuthedRequest, run_id: int) -> HttpResponse:
    return render(request, "training/generation.html", _generation_context(request, run_id))


@staff_required
@require_GET
def generation_run_live(request: AuthedRequest, run_id: int) -> HttpResponse:
    return render(request, "training/_generation_live.html", _generation_context(request, run_id))


@staff_required
@require_POST
def generation_run_cancel(request: AuthedRequest, run_id: int) -> HttpResponseBase:
    return _cancel(request, get_object_or_404(GenerationRun, pk=run_id), stops_after="the current batch")


@staff_required
@require_POST
def generation_run_resume(request: AuthedRequest, run_id: int) -> HttpResponseBase:
    run = get_object_or_404(GenerationRun, pk=run_id)
    refused = _resume_refused(request, run, lambda: services.generation_run_resume(run=run))
    if refused is not None:
        return refused
    done = f"{run.progress_step} of {run.progress_total} done"
    message = f"Queued again: it answers the prompts it had not reached ({done})."
    return _after_run_action(request, run, message=message, level="success")


# Model versions -------------------------------------------------------------------------


@staff_required
@require_GET
def versions_page(request: AuthedRequest) -> HttpResponse:
    context = {"rows": selectors.model_versions_overview(), "section": "models"}
    return render(request, "training/versions.html", context)


def _render_version(
    request: AuthedRequest, version_id: int, form: GenerationRunForm | None = None, *, status: int = 200
) -> HttpResponse:
    detail = selectors.model_version_detail(version_id=version_id)
    context = {
        "detail": detail,
        "form": form or GenerationRunForm(version=detail.version),
        "section": "models",
        "flashes": _messages(request),
        "eval_tag": settings.DUET_EVAL_TAG,
        "campaigns": annotate_selectors.campaigns_visible(user=request.user),
    }
    return render(request, "training/version.html", context, status=status)


@staff_required
@require_http_methods(["GET", "POST"])
def version_page(request: AuthedRequest, version_id: int) -> HttpResponseBase:
    """The version, its lineage and runs; its form POSTs a generation round."""
    if request.method == "GET":
        return _render_version(request, version_id)
    version = get_object_or_404(ModelVersion, pk=version_id)
    form = GenerationRunForm(request.POST, version=version)
    if not form.is_valid():
        return _render_version(request, version_id, form, status=400)
    try:
        run = services.generation_run_start(model_version=version, user=request.user, **form.options())
    except services.QueueUnavailable as exc:
        form.add_error(None, f"Not started: {exc}")
        return _render_version(request, version_id, form, status=503)
    except ValueError as exc:
        form.add_error(None, f"Not started: {exc}")
        return _render_version(request, version_id, form, status=400)
    messages.success(request, f"{run} is queued; its comparisons reach the annotators when it finishes.")
    return redirect("training:generation", run_id=run.pk)


@staff_required
@require_POST
def version_next_round(request: AuthedRequest, version_id: int) -> HttpResponseBase:
    """Train on the judgements since the last run, then let the new version generate the next round.

    With a ``campaign`` (a slug) both stay in it: its judgements train, its prompts are answered.
    """
    version = get_object_or_404(ModelVersion, pk=version_id)
    slug = request.POST.get("campaign", "")
    try:
        campaign = annotate_services.campaign_resolve(slug=slug) if slug else None
        train_run, gen_run = services.next_round_start(base_version=version, user=request.user, campaign=campaign)
    except (services.QueueUnavailable, ValueError) as exc:
        messages.error(request, f"Next round not started: {exc}")
        return redirect("training:version", version_id=version.pk)
    messages.success(
        request, f"Next round: {train_run} is queued, and {gen_run} follows with the version it produces."
    )
    return redirect("training:run", run_id=train_run.pk)


@staff_required
@require_POST
def version_evaluation_round(request: AuthedRequest, version_id: int) -> HttpResponseBase:
    """Queue the version's answers to the evaluation prompts, paired with its parent's, for people to judge."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    try:
        run = services.evaluation_round_start(model_version=version, user=request.user)
    except (services.QueueUnavailable, ValueError) as exc:
        messages.error(request, f"Evaluation round not started: {exc}")
        return redirect("training:version", version_id=version.pk)
    messages.success(
        request, f"{run} is queued: {version.name} against its parent on the prompts kept for evaluation."
    )
    return redirect("training:generation", run_id=run.pk)


@staff_required
@require_GET
def version_download(request: AuthedRequest, version_id: int) -> HttpResponseBase:
    """The version's weights as a tar, streamed from the artifact store."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    try:
        return downloads.version_tar_response(version)
    except downloads.NothingToDownload as exc:
        return HttpResponseNotFound(str(exc), content_type="text/plain; charset=utf-8")


@staff_required
@require_GET
def training_run_file(request: AuthedRequest, run_id: int, which: str) -> HttpResponseBase:
    """The run's frozen dataset (or held-out) file, streamed from the artifact store."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        return downloads.run_file_response(run, which)
    except downloads.NothingToDownload as exc:
        return HttpResponseNotFound(str(exc), content_type="text/plain; charset=utf-8")


# Leaderboard ----------------------------------------------------------------------------


@staff_required
@require_GET
def leaderboard_page(request: AuthedRequest) -> HttpResponse:
    raw = request.GET.get("exclude", "")
    campaign = request.GET.get("campaign", "")
    board = leaderboard(judgement_filter=JudgementFilter.from_inputs(exclude=raw, campaign=campaign or None))
    context = {
        "board": board,
        "exclude": raw,
        "campaign": campaign,
        "campaigns": annotate_selectors.campaigns_visible(user=request.user),
        "section": "models",
    }
    return render(request, "training/leaderboard.html", context)
