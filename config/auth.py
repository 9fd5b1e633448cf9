"""Who may call a view: the throttled login, the signed-in request type, the staff check, and the
API's bearer tokens.

Shared by every app's pages and API routers, so that none of them imports another's views.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django_htmx.middleware import HtmxDetails
from ninja.errors import HttpError
from ninja.security import HttpBearer

from annotate import selectors
from annotate.models import ApiToken, token_digest
from annotate.services.logins import login_failure_record, login_failures_clear

View = Callable[..., HttpResponseBase]


class AuthedRequest(HttpRequest):
    """What page views receive: the login middleware let only a signed-in user through."""

    user: User  # type: ignore[assignment]
    htmx: HtmxDetails


def staff_required(view: View) -> View:
    """Staff only; the login middleware has already sent anonymous visitors to the login page."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_staff:
            raise PermissionDenied("This page is for staff.")
        return view(request, *args, **kwargs)

    return wrapped


@functools.cache
def _token_owner_sql() -> str:
    """The active user who owns an unexpired token, as one SQL statement (parameters: digest, now).

    Every API request runs it. The ORM query it replaces (``select_related`` + ``first()``) took
    about 0.6 ms of CPU against 0.2 ms for this, and was the largest single share of the server's
    CPU under ``bench/annotate_load/``.
    """
    users, tokens = connection.ops.quote_name(User._meta.db_table), connection.ops.quote_name(ApiToken._meta.db_table)
    # Only table names are formatted in; the digest and the time are query parameters.
    return (
        f"SELECT u.* FROM {users} u JOIN {tokens} t ON t.user_id = u.id"  # noqa: S608
        " WHERE t.digest = %s AND u.is_active AND (t.expires_at IS NULL OR t.expires_at > %s)"
    )


class BearerToken(HttpBearer):
    """``Authorization: Bearer TOKEN`` of an active user; the API's default."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        user = next(iter(User.objects.raw(_token_owner_sql(), [token_digest(token), now])), None)
        if user is None:
            return None
        request.user = user
        return user


class StaffBearerToken(BearerToken):
    """A bearer token whose user is staff: 401 without a valid token, 403 for an annotator's."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = super().authenticate(request, token)
        if user is not None and not user.is_staff:
            raise HttpError(403, "this endpoint is for staff")
        return user


# Login ------------------------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str | None:
    """The browser's address: the socket's, or the one the ``DUET_TRUSTED_PROXIES``-th proxy saw.

    Each trusted proxy appends the address it was connected from to X-Forwarded-For, so only the
    entries they wrote (counted from the right) are believed; the client may forge the rest.
    """
    hops = settings.DUET_TRUSTED_PROXIES
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.META.get("REMOTE_ADDR") or None


class ThrottledLoginMixin(forms.Form):
    """Refuses a sign-in once the username or the address has too many recent failures.

    The limits are ``DUET_LOGIN_*`` in settings. A refused attempt is not checked against the
    password at all, so guessing on cannot tell right from wrong.
    """

    request: HttpRequest | None

    throttled = False

    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", "")).casefold()
        ip = client_ip(self.request) if self.request is not None else None
        wait = selectors.login_retry_after(username=username, ip=ip)
        if wait is not None:
            self.throttled = True
            minutes = -(-wait // 60)
            raise forms.ValidationError(
                f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failure_record(username=username, ip=ip)
            raise
        login_failures_clear(username=username)
        return cleaned or self.cleaned_data


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


class ThrottledLoginView(LoginView):
    """The login page; a refused attempt answers 429 Too Many Requests with the form and its wait."""

    form_class = ThrottledAuthenticationForm

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "throttled", False):
            response.status_code = 429
        return response
