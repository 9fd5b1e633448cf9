"""The annotator's page with its htmx actions, and the staff's import, export and stats pages.

Each view parses the request, calls one service (or selector), and renders. The judging
actions answer an htmx request with the next card and a full request (no JavaScript) with a
redirect back to the page, so the forms work either way.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBase, HttpResponseNotFound
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate import downloads, selectors, services
from annotate.charts import bar_chart
from annotate.formats import ImportFileError
from annotate.forms import ExportForm, ImportForm, JudgementForm, SkipForm
from annotate.limits import REASON_MAX_CHARS
from annotate.models import Campaign, Judgement
from config.auth import AuthedRequest, staff_required
from config.queues import QueueUnavailable

# A queued export's page asks for its progress this often.
EXPORT_POLL_SECONDS = 2

# Annotating -----------------------------------------------------------------------------

_MESSAGE_LEVELS = {
    "info": messages.INFO,
    "success": messages.SUCCESS,
    "warning": messages.WARNING,
    "error": messages.ERROR,
}


def _campaign(slug: str | None) -> Campaign:
    """The campaign a page or form names (the default one when none is named); an unknown slug is a 404."""
    try:
        return services.campaign_resolve(slug=slug)
    except services.CampaignNotFound as exc:
        raise Http404(str(exc)) from exc


def _campaign_url(campaign: Campaign) -> str:
    return reverse("annotate:campaign", kwargs={"slug": campaign.slug})


def _card_context(
    request: AuthedRequest,
    campaign: Campaign,
    *,
    message: str = "",
    level: str = "info",
    initial: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Lease the annotator's next comparison in ``campaign`` and gather what its card shows.

    A ``QueueRefused`` from the campaign's rules propagates: the caller renders the refusal.
    """
    card = services.lease_take(annotator=request.user, campaign=campaign)
    shown = initial if card is not None and initial and initial.get("comparison_id") == card.comparison_id else {}
    return {
        "card": card,
        "campaign": campaign,
        "progress": selectors.annotator_progress(annotator=request.user, campaign=campaign),
        "can_undo": selectors.last_judgement(annotator=request.user, campaign=campaign) is not None,
        "strengths": Judgement.Strength.choices,
        "reason_max_chars": REASON_MAX_CHARS,
        "chosen": shown.get("choice", ""),
        "chosen_strength": shown.get("strength", ""),
        "reason": shown.get("reason", ""),
        "message": message,
        "level": level,
    }


def _refused(request: AuthedRequest, campaign: Campaign, refusal: services.QueueRefused) -> HttpResponse:
    """The page that says why the campaign serves this annotator no card; an htmx action reloads into it."""
    if request.htmx:
        return HttpResponse(status=200, headers={"HX-Redirect": _campaign_url(campaign)})
    context = {"campaign": campaign, "reason": refusal.reason, "message": refusal.message}
    return render(request, "annotate/refused.html", context, status=403)


def _after_action(
    request: AuthedRequest,
    campaign: Campaign,
    *,
    message: str,
    level: str,
    status: int = 200,
    initial: dict[str, Any] | None = None,
) -> HttpResponse:
    if not request.htmx:
        messages.add_message(request, _MESSAGE_LEVELS[level], message)
        return redirect(_campaign_url(campaign))
    try:
        context = _card_context(request, campaign, message=message, level=level, initial=initial)
    except services.QueueRefused as refusal:
        return _refused(request, campaign, refusal)
    return render(request, "annotate/_card.html", context, status=status)


def _form_problem(form: JudgementForm | SkipForm) -> str:
    return "; ".join(f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items())


@require_GET
def annotate_page(request: AuthedRequest) -> HttpResponse:
    """The annotator's home: the list of campaigns when more than one is open to them, else the default one's cards."""
    if len(selectors.campaigns_open_to(annotator=request.user)) > 1:
        return redirect("annotate:campaigns")
    return campaign_page(request, slug=None)


@require_GET
def campaign_page(request: AuthedRequest, slug: str | None) -> HttpResponse:
    """A campaign's keyboard flow; its guidelines first on the annotator's first visit."""
    campaign = _campaign(slug)
    try:
        services.queue_check(annotator=request.user, campaign=campaign)
    except services.QueueRefused as refusal:
        return _refused(request, campaign, refusal)
    if not selectors.guidelines_seen(annotator=request.user, campaign=campaign):
        return render(request, "annotate/guidelines.html", {"campaign": campaign})
    message = ""
    level = "info"
    for flash in messages.get_messages(request):
        message, level = str(flash), flash.level_tag or "info"
    try:
        context = _card_context(request, campaign, message=message, level=level)
    except services.QueueRefused as refusal:
        return _refused(request, campaign, refusal)
    return render(request, "annotate/page.html", context)


@require_POST
def guidelines_seen(request: AuthedRequest, slug: str) -> HttpResponse:
    """The annotator has read the guidelines: on to the cards."""
    campaign = _campaign(slug)
    services.guidelines_mark_seen(annotator=request.user, campaign=campaign)
    return redirect(_campaign_url(campaign))


@require_GET
def campaigns_page(request: AuthedRequest) -> HttpResponse:
    """The campaigns open to the annotator, with their judgements and what is left in each."""
    rows = [
        selectors.campaign_progress(annotator=request.user, campaign=campaign)
        for campaign in selectors.campaigns_open_to(annotator=request.user)
    ]
    return render(request, "annotate/campaigns.html", {"rows": rows})


@require_POST
def judge(request: AuthedRequest) -> HttpResponse:
    form = JudgementForm(request.POST)
    campaign = _campaign(request.POST.get("campaign"))
    if not form.is_valid():
        return _after_action(request, campaign, message=f"Not saved: {_form_problem(form)}", level="error", status=422)
    data = form.cleaned_data
    try:
        judgement = services.judgement_record(
            annotator=request.user,
            comparison_id=data["comparison_id"],
            left_id=data["left_id"],
            right_id=data["right_id"],
            choice=data["choice"],
            strength=data["strength"],
            reason=data["reason"],
        )
    except services.JudgementConflict as exc:
        message = f"Not saved: {exc}. Here is the next one."
        return _after_action(request, campaign, message=message, level="warning", status=409)
    except services.JudgementInvalid as exc:
        return _after_action(request, campaign, message=f"Not saved: {exc}.", level="error", status=422, initial=data)
    saved = judgement.get_choice_display()
    if judgement.strength:
        saved = f"{saved} ({judgement.get_strength_display().lower()})"
    return _after_action(request, campaign, message=f"Saved: {saved}. Press U to undo.", level="success")


@require_POST
def skip(request: AuthedRequest) -> HttpResponse:
    form = SkipForm(request.POST)
    campaign = _campaign(request.POST.get("campaign"))
    if not form.is_valid():
        message = f"Not skipped: {_form_problem(form)}"
        return _after_action(request, campaign, message=message, level="error", status=422)
    services.assignment_skip(annotator=request.user, comparison_id=form.cleaned_data["comparison_id"])
    return _after_action(request, campaign, message="Skipped; you will not see that one again.", level="info")


@require_POST
def undo(request: AuthedRequest) -> HttpResponse:
    campaign = _campaign(request.POST.get("campaign"))
    try:
        undone = services.judgement_undo_last(annotator=request.user, campaign=campaign)
    except services.JudgementConflict as exc:
        return _after_action(request, campaign, message=f"Not undone: {exc}.", level="warning", status=409)
    if undone is None:
        return _after_action(request, campaign, message="Nothing to undo.", level="info")
    initial = {
        "comparison_id": undone.comparison_id,
        "choice": undone.choice,
        "strength": undone.strength,
        "reason": undone.reason,
    }
    return _after_action(
        request,
        campaign,
        message="Took back your last judgement: here it is again, as you had answered it.",
        level="info",
        initial=initial,
    )


# Staff ----------------------------------------------------------------------------------


@staff_required
@require_http_methods(["GET", "POST"])
def import_page(request: AuthedRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "annotate/import.html", {"form": ImportForm()})
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(request, "annotate/import.html", {"form": form}, status=400)
    data = form.cleaned_data
    upload = data["file"]
    try:
        if data["kind"] == "prompts":
            result = services.prompts_import(
                stream=upload.file, name=upload.name, fmt=data["fmt"] or None, campaign=data["campaign"]
            )
        else:
            result = services.pairs_import(
                stream=upload.file,
                name=upload.name,
                fmt=data["fmt"] or None,
                judged=data["judged"],
                gold=data["gold"],
                target_judgements=data["target_judgements"],
                campaign=data["campaign"],
            )
    except ImportFileError as exc:
        context = {"form": form, "file_name": upload.name, "errors": exc.errors, "errors_stopped": exc.stopped}
        return render(request, "annotate/import.html", context, status=400)
    context = {"form": ImportForm(), "file_name": upload.name, "result": result, "kind": data["kind"]}
    return render(request, "annotate/import.html", context)


@staff_required
@require_http_methods(["GET", "POST"])
def export_page(request: AuthedRequest) -> HttpResponseBase:
    if request.method == "GET":
        return render(request, "annotate/export.html", {"form": ExportForm()})
    form = ExportForm(request.POST)
    if not form.is_valid():
        return render(request, "annotate/export.html", {"form": form}, status=400)
    data = form.cleaned_data
    judgement_filter = form.judgement_filter()
    try:
        job = services.export_job_start_if_large(
            user=request.user, fmt=data["fmt"], conversational=data["conversational"],
            judgement_filter=judgement_filter,
        )
    except QueueUnavailable as exc:
        form.add_error(None, f"Not started: {exc}")
        return render(request, "annotate/export.html", {"form": form}, status=503)
    if job is not None:
        return redirect("annotate:export_job", job_id=job.pk)
    # The file is opened, then its folder removed: the open handle keeps the data readable
    # (POSIX) while FileResponse streams it, and nothing is left on disk afterwards.
    with tempfile.TemporaryDirectory(prefix="duet-export-") as tmp:
        path = services.export_download(
            directory=Path(tmp),
            fmt=data["fmt"],
            conversational=data["conversational"],
            judgement_filter=judgement_filter,
        )
        handle = path.open("rb")
    return FileResponse(handle, as_attachment=True, filename=path.name)


@staff_required
@require_GET
def stats_page(request: AuthedRequest) -> HttpResponse:
    """Counts, and one campaign's alpha, throughput and annotator table (``?campaign=slug``, the default one
    when none; ``?sort=column`` or ``-column``); ``?format=csv`` is the campaign's table alone."""
    sort = request.GET.get("sort", selectors.CAMPAIGN_DEFAULT_SORT)
    try:
        campaign = services.campaign_resolve(slug=request.GET.get("campaign"))
    except services.CampaignNotFound as exc:
        raise Http404(str(exc)) from exc
    campaign_stats = selectors.campaign_stats(campaign=campaign, sort=sort)
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="annotators-{campaign.slug}.csv"'
        writer = csv.writer(response)
        writer.writerow(selectors.CAMPAIGN_CSV_HEADER)
        writer.writerows(row.csv_row() for row in campaign_stats.annotators)
        return response
    throughput = selectors.campaign_throughput(campaign=campaign)
    label = "%Y-%m-%d %H:00" if throughput.unit == "hour" else "%Y-%m-%d"
    context = {
        "stats": selectors.annotation_stats(),
        "campaign_stats": campaign_stats,
        "campaign": campaign,
        "campaigns": selectors.campaigns_visible(user=request.user),
        "throughput": throughput,
        "throughput_chart": bar_chart(
            title=f"Judgements per {throughput.unit} in {campaign.name}",
            bars=[(moment.strftime(label), count) for moment, count in throughput.points],
            x_label=f"judgements per {throughput.unit} (UTC)",
        ),
        "sort": sort,
        "flags": selectors.open_flags(campaign=campaign),
    }
    return render(request, "annotate/stats.html", context)


@staff_required
@require_GET
def export_job_page(request: AuthedRequest, job_id: int) -> HttpResponse:
    """A queued export's progress (the partial polls while it runs) and its download link once written."""
    job = selectors.export_job(job_id=job_id)
    if job is None:
        raise Http404(f"no export {job_id}")
    template = "annotate/_export_job.html" if request.htmx else "annotate/export_job.html"
    return render(request, template, {"job": job, "poll_seconds": EXPORT_POLL_SECONDS})


@staff_required
@require_GET
def export_job_download(request: AuthedRequest, job_id: int) -> HttpResponseBase:
    """The file a queued export wrote, streamed from the artifact store."""
    job = selectors.export_job(job_id=job_id)
    if job is None or job.status != job.Status.SUCCEEDED:
        raise Http404(f"export {job_id} has no file to download")
    try:
        return downloads.export_job_file_response(job)
    except downloads.ExportFileMissing as exc:
        return HttpResponseNotFound(str(exc), content_type="text/plain; charset=utf-8")
