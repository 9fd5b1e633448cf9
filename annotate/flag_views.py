"""The staff's action on a flagged annotator: clearing the flag.

A plain POST answered with a redirect back to where the button was (the stats page by default),
so it works without JavaScript; the list of open flags is ``templates/annotate/_flags.html``.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from annotate import services
from annotate.models import AnnotatorFlag
from config.auth import AuthedRequest, staff_required


def _back(request: AuthedRequest) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("annotate:stats")


@staff_required
@require_POST
def unflag(request: AuthedRequest, flag_id: int) -> HttpResponseRedirect:
    flag = AnnotatorFlag.objects.select_related("annotator", "campaign").filter(pk=flag_id).first()
    if flag is None:
        raise Http404(f"no flag {flag_id}")
    try:
        services.annotator_unflag(flag=flag, actor=request.user, note=request.POST.get("note", ""))
    except (services.FlagNotOpen, services.FlagInvalid) as exc:
        messages.error(request, f"{flag.annotator.username} not unflagged: {exc}")
    else:
        messages.success(request, f"{flag.annotator.username} unflagged in {flag.campaign.name}.")
    return HttpResponseRedirect(_back(request))
