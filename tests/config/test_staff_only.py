"""Staff only, everywhere: every page in the URLconf and every API operation refuses a signed-in annotator.

Nothing here is a hand-picked list of staff views. The URLconf and the ninja routers are walked, and
everything found must refuse an annotator unless it is named below as open to annotators; a new staff
view or operation that forgets its check fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

from annotate.services import api_token_create
from config.api import api
from config.auth import StaffBearerToken
from tests.annotate.factories import UserFactory

pytestmark = pytest.mark.django_db

# Pages any signed-in user may open: judging, and the account pages (by URL name).
ANNOTATOR_PAGES = frozenset(
    {
        "annotate:page",
        "annotate:judge",
        "annotate:skip",
        "annotate:undo",
        "annotate:campaigns",
        "annotate:campaign",
        "annotate:campaign_guidelines",
        "login",
        "logout",
        "admin:login",
        "admin:logout",
        "password_change",
        "password_change_done",
        "password_reset",
        "password_reset_done",
        "password_reset_confirm",
        "password_reset_complete",
        # Each user's own API tokens: the page lists, makes, rotates and revokes only theirs.
        "tokens",
        "token_create",
        "token_rotate",
        "token_revoke",
    }
)
# Routes without a name that are open too: the front page's redirect to judging.
ANNOTATOR_ROUTES = frozenset({""})
# API operations for annotators (by view function); every other one must be staff only.
# ``campaign_list`` answers each caller with the campaigns open to them (``selectors.campaigns_visible``).
ANNOTATOR_OPERATIONS = frozenset({"comparison_next", "judgement_create", "judgement_undo", "campaign_list"})
# The JSON API is checked operation by operation below, from its routers.
API_PREFIX = "api/v1/"
# The security scheme ninja names after ``config.auth.StaffBearerToken``.
STAFF_SCHEME = StaffBearerToken.__name__
# Where the admin site and django-rq send a signed-in user who is not staff.
STAFF_LOGIN_URLS = ("/admin/login/", settings.LOGIN_URL)

_PLACEHOLDERS = {"int": "1", "str": "x", "slug": "x", "path": "x", "uuid": "00000000-0000-0000-0000-000000000001"}


def _route(pattern: Any) -> str:
    """The part of a URL that a pattern matches, with its parameters filled in (``<int:id>`` with 1)."""
    if isinstance(pattern, RoutePattern):
        return re.sub(r"<(?:(\w+):)?\w+>", lambda m: _PLACEHOLDERS[m.group(1) or "str"], str(pattern._route))
    if isinstance(pattern, RegexPattern):
        regex = re.sub(r"\(\?P<\w+>[^)]*\)", "x", str(pattern._regex))
        return re.sub(r"[\^$?\\]|\\Z", "", regex.removesuffix("\\Z"))
    return str(pattern)


def _pages(patterns: list[Any] | None = None, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    """Every view of the URLconf as (its name or route, a URL that reaches it), the JSON API left out."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + _route(entry.pattern)
        if isinstance(entry, URLResolver):
            if route.startswith(API_PREFIX):
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _pages(entry.url_patterns, route, inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else route
            yield name, "/" + route


def _staff_pages() -> list[tuple[str, str]]:
    return [(name, url) for name, url in _pages() if name not in ANNOTATOR_PAGES | ANNOTATOR_ROUTES]


def _operations() -> Iterator[tuple[str, str, Any]]:
    """Every API operation as (method, path, operation), from the routers the API mounts."""
    for prefix, router in api._routers:
        for path, path_view in router.path_operations.items():
            for operation in path_view.operations:
                for method in operation.methods:
                    yield method, re.sub("/+", "/", f"/{API_PREFIX}/{prefix}/{path}"), operation


def _staff_operations() -> list[tuple[str, str]]:
    return [
        (method, path)
        for method, path, operation in _operations()
        if operation.view_func.__name__ not in ANNOTATOR_OPERATIONS
    ]


def _refused(response: Any) -> bool:
    """403, 401 (django-rq's JSON views), or a redirect to a login page (the admin site, django-rq)."""
    if response.status_code in (401, 403):
        return True
    location = response.headers.get("Location", "")
    return response.status_code == 302 and location.startswith(STAFF_LOGIN_URLS)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):  # type: ignore[no-untyped-def]
    """Each test makes a user; the real hasher would spend most of the test's time on its password."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_the_walk_finds_the_staff_pages_and_operations():
    """The enumeration itself works: it sees pages and operations from every app."""
    names = {name for name, _ in _staff_pages()}
    assert {"training:runs", "training:run", "annotate:export", "annotate:import"} <= names
    assert any(name.startswith("admin:") for name in names)
    assert ("GET", "/api/v1/export") in _staff_operations()
    assert ("POST", "/api/v1/runs") in _staff_operations()


@pytest.mark.parametrize(("name", "url"), _staff_pages(), ids=[name for name, _ in _staff_pages()])
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_staff_page_refuses_an_annotator(client, name, url, method):
    client.force_login(UserFactory())
    response = getattr(client, method)(url)
    assert _refused(response), f"{method.upper()} {url} ({name}) answered {response.status_code} to an annotator"


@pytest.mark.parametrize(("method", "path"), _staff_operations(), ids=[" ".join(op) for op in _staff_operations()])
def test_a_staff_operation_refuses_an_annotator_token(client, method, path):
    url = re.sub(r"\{\w+\}", "1", path)
    token = api_token_create(user=UserFactory()).key
    response = client.generic(method, url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403, f"{method} {url} answered {response.status_code} to an annotator's token"


@pytest.mark.parametrize(("method", "path"), _staff_operations(), ids=[" ".join(op) for op in _staff_operations()])
def test_a_staff_operation_declares_the_staff_token(method, path):
    """The OpenAPI document says so too, so clients (and the fuzz test) see which operations are staff only."""
    operation = api.get_openapi_schema()["paths"][path][method.lower()]
    assert any(STAFF_SCHEME in requirement for requirement in operation["security"])
