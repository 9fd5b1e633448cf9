"""The staff's campaign pages: the list with each campaign's status, a new campaign, an edit, a status change.

Forms post plainly and answer with a redirect, so the pages work without JavaScript. A campaign's
rules (limits, access needing its people) are ``services.campaign_create``/``campaign_update``'s;
a refusal comes back on the form next to the field it names.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotate import selectors, services
from annotate.campaign_forms import CampaignForm, CampaignStatusForm
from annotate.models import Campaign, CampaignStatus
from config.auth import AuthedRequest, staff_required


def _campaign(slug: str) -> Campaign:
    try:
        return services.campaign_resolve(slug=slug)
    except services.CampaignNotFound as exc:
        raise Http404(str(exc)) from exc


def _form_page(
    request: AuthedRequest, form: CampaignForm, campaign: Campaign | None, status: int = 200
) -> HttpResponse:
    """The form, with its guidelines shown as an annotator will see them (the posted ones on a preview)."""
    guidelines = form.data.get("guidelines") if form.is_bound else form.initial.get("guidelines", "")
    context = {"form": form, "campaign": campaign, "guidelines": guidelines or ""}
    return render(request, "annotate/campaign_form.html", context, status=status)


def _refused(form: CampaignForm, exc: services.CampaignInvalid) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


@staff_required
@require_GET
def campaign_admin(request: AuthedRequest) -> HttpResponse:
    context = {"campaigns": selectors.campaigns_visible(user=request.user), "statuses": CampaignStatus.choices}
    return render(request, "annotate/campaign_admin.html", context)


@staff_required
@require_http_methods(["GET", "POST"])
def campaign_new(request: AuthedRequest) -> HttpResponseBase:
    if request.method == "GET":
        return _form_page(request, CampaignForm(initial=_defaults()), None)
    form = CampaignForm(request.POST)
    if "preview" in request.POST or not form.is_valid():
        return _form_page(request, form, None, status=200 if "preview" in request.POST else 400)
    try:
        campaign = services.campaign_create(**form.values(), actor=request.user)
    except services.CampaignInvalid as exc:
        _refused(form, exc)
        return _form_page(request, form, None, status=400)
    messages.success(request, f"Campaign {campaign.slug} created.")
    return redirect("annotate:campaign_admin")


@staff_required
@require_http_methods(["GET", "POST"])
def campaign_edit(request: AuthedRequest, slug: str) -> HttpResponseBase:
    campaign = _campaign(slug)
    if request.method == "GET":
        return _form_page(request, CampaignForm(campaign=campaign), campaign)
    form = CampaignForm(request.POST, campaign=campaign)
    if "preview" in request.POST or not form.is_valid():
        return _form_page(request, form, campaign, status=200 if "preview" in request.POST else 400)
    try:
        services.campaign_update(campaign=campaign, actor=request.user, **form.values())
    except services.CampaignInvalid as exc:
        _refused(form, exc)
        return _form_page(request, form, campaign, status=400)
    messages.success(request, f"Campaign {campaign.slug} saved.")
    return redirect("annotate:campaign_admin")


@staff_required
@require_POST
def campaign_status(request: AuthedRequest, slug: str) -> HttpResponseBase:
    campaign = _campaign(slug)
    form = CampaignStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Campaign {slug} unchanged: choose active, paused or closed.")
        return redirect("annotate:campaign_admin")
    services.campaign_update(campaign=campaign, actor=request.user, status=form.cleaned_data["status"])
    messages.success(request, f"Campaign {slug} is now {form.cleaned_data['status']}.")
    return redirect("annotate:campaign_admin")


def _defaults() -> dict[str, object]:
    """A new campaign's form starts from the site's k and rushed threshold, like ``create_campaign``."""
    return {
        "target_judgements": settings.DUET_JUDGEMENTS_PER_COMPARISON,
        "rushed_seconds": settings.DUET_RUSHED_SECONDS,
    }
