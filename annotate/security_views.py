"""A user's own API tokens (make, rotate, revoke) and the staff's audit log.

A token is shown once, in the response to the request that made it, and never stored in a
session or message; that response is marked ``no-store`` so no cache keeps it either.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from annotate import selectors, services
from annotate.models import ApiToken
from config.auth import AuthedRequest, staff_required

# Lines per page of the audit log: a screenful or two, and one cheap query per page.
AUDIT_PAGE_SIZE = 50


def _render_tokens(request: AuthedRequest, **extra: Any) -> HttpResponse:
    context = {"tokens": selectors.api_tokens_of(user=request.user), **extra}
    return render(request, "account/tokens.html", context)


@require_GET
@never_cache
def tokens_page(request: AuthedRequest) -> HttpResponse:
    return _render_tokens(request)


@require_POST
@never_cache
def token_create(request: AuthedRequest) -> HttpResponse:
    issued = services.api_token_create(user=request.user)
    return _render_tokens(request, new_key=issued.key)


@require_POST
@never_cache
def token_rotate(request: AuthedRequest) -> HttpResponse:
    issued = services.api_token_rotate(user=request.user)
    return _render_tokens(request, new_key=issued.key, rotated=True)


@require_POST
@never_cache
def token_revoke(request: AuthedRequest, prefix: str) -> HttpResponse:
    try:
        services.api_token_revoke(user=request.user, prefix=prefix)
    except ApiToken.DoesNotExist as exc:
        raise Http404("no such token") from exc
    return _render_tokens(request, revoked=prefix)


@staff_required
@require_GET
def audit_page(request: AuthedRequest) -> HttpResponse:
    page = Paginator(selectors.audit_entries(), AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "staff/audit.html", {"page": page})
