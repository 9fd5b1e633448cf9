"""The staff's adjudication pages: comparisons whose votes split, and a decision on each.

A decision is a plain POST answered with a redirect back to the list, so the page works without
JavaScript; the list reads the decision from the comparison itself.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotate import selectors, services
from annotate.forms import AdjudicationForm
from annotate.limits import ADJUDICATION_NOTE_MAX_CHARS
from annotate.models import Comparison, Outcome
from config.auth import AuthedRequest, staff_required

# Split comparisons per page: each shows both completions and every vote, so a page stays readable.
ADJUDICATION_PAGE_SIZE = 20


@staff_required
@require_GET
def adjudication_list(request: AuthedRequest) -> HttpResponse:
    page = Paginator(selectors.comparisons_split(), ADJUDICATION_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "cases": selectors.split_cases(splits=page.object_list),
        "outcomes": Outcome.choices,
        "note_max_chars": ADJUDICATION_NOTE_MAX_CHARS,
    }
    return render(request, "annotate/adjudicate.html", context)


@staff_required
@require_POST
def adjudication_decide(request: AuthedRequest, comparison_id: int) -> HttpResponseRedirect:
    form = AdjudicationForm(request.POST)
    page = request.POST.get("page", "")
    back = f"{reverse('annotate:adjudicate')}?page={page if page.isdigit() else 1}#comparison-{comparison_id}"
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items())
        messages.error(request, f"Comparison #{comparison_id} not decided: {problems}")
        return HttpResponseRedirect(back)
    try:
        comparison = services.comparison_adjudicate(
            comparison_id=comparison_id,
            outcome=form.cleaned_data["outcome"],
            by=request.user,
            note=form.cleaned_data["note"],
            gold=form.cleaned_data["gold"],
        )
    except Comparison.DoesNotExist as exc:
        raise Http404(f"no comparison {comparison_id}") from exc
    except services.AdjudicationInvalid as exc:
        messages.error(request, f"Comparison #{comparison_id} not decided: {exc}")
        return HttpResponseRedirect(back)
    gold = " and marked gold" if form.cleaned_data["gold"] else ""
    messages.success(
        request, f"Comparison #{comparison_id} decided: {comparison.get_adjudicated_outcome_display()}{gold}."
    )
    return HttpResponseRedirect(back)
