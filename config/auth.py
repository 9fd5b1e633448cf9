"""Who may call a view: the signed-in request type, the staff check, and the API's bearer tokens.

Shared by every app's pages and API routers, so that none of them imports another's views.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponseBase
from django_htmx.middleware import HtmxDetails
from ninja.errors import HttpError
from ninja.security import HttpBearer

from annotate.models import ApiToken

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
    """The active user who owns a token, as one SQL statement (parameter: the token).

    Every API request runs it. The ORM query it replaces (``select_related`` + ``first()``) took
    about 0.6 ms of CPU against 0.2 ms for this, and was the largest single share of the server's
    CPU under ``bench/annotate_load/``.
    """
    users, tokens = connection.ops.quote_name(User._meta.db_table), connection.ops.quote_name(ApiToken._meta.db_table)
    # Only table names are formatted in; the token is a query parameter.
    return f"SELECT u.* FROM {users} u JOIN {tokens} t ON t.user_id = u.id WHERE t.key = %s AND u.is_active"  # noqa: S608


class BearerToken(HttpBearer):
    """``Authorization: Bearer TOKEN`` of an active user; the API's default."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = next(iter(User.objects.raw(_token_owner_sql(), [token])), None)
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
