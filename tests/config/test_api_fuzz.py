"""Property-based fuzzing of the JSON API from its own OpenAPI document (schemathesis).

Every operation the document lists is called with requests generated from its schemas, valid ones and
invalid ones, three times each: without a token (must be 401), with an annotator's token (a staff
operation must be 403) and with a staff member's token (must not be a server error). The seed is fixed
and the examples bounded, so a run is repeatable: about 30 s of CPU for every operation together.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from annotate.services import api_token_create
from config.api import api
from config.auth import StaffBearerToken
from config.wsgi import application
from tests.annotate.factories import ComparisonFactory, StaffFactory, UserFactory
from training.models import ModelVersion

pytestmark = pytest.mark.django_db

# Per operation and phase; enough to reach every parameter's edges, few enough to keep the run short.
MAX_EXAMPLES = 25
SEED = 20261202
# The security scheme ninja names after ``config.auth.StaffBearerToken``.
STAFF_SCHEME = StaffBearerToken.__name__

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    allow_x00=True,
    database="none",
)


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """The WSGI handler closes the database connection after each request; the test's transaction needs it.

    Django's own test client disconnects the same receivers while it sends a request.
    """
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def tokens(private_queues: str, runs_dir: object, settings: Any) -> dict[str, str]:
    """A default model version, a comparison to judge, and a bearer token for an annotator and for staff."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # the users' passwords: fast
    ModelVersion.objects.create(name="base", path="/nonexistent/base", is_default=True)
    ComparisonFactory()
    return {
        "annotator": api_token_create(user=UserFactory()).key,
        "staff": api_token_create(user=StaffFactory()).key,
    }


def _call(case: schemathesis.Case, token: str | None) -> schemathesis.Response:
    headers = {key: value for key, value in (case.headers or {}).items() if key.lower() != "authorization"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    case.headers = headers
    return case.call(app=application)


def _is_documented(case: schemathesis.Case) -> bool:
    return case.method.lower() in schema.raw_schema["paths"][case.path]


def _is_staff_only(case: schemathesis.Case) -> bool:
    security = case.operation.definition.raw.get("security", [])
    return any(STAFF_SCHEME in requirement for requirement in security)


FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck)
)

def _check(case: schemathesis.Case, tokens: dict[str, str]) -> None:
    label = f"{case.method} {case.formatted_path}"
    anonymous = _call(case, None)
    if not _is_documented(case):
        # A method the path does not have: refused before anyone is asked for a token.
        assert anonymous.status_code == 405, f"{label} answered {anonymous.status_code}"
        return
    assert anonymous.status_code == 401, f"{label} answered {anonymous.status_code} without a token"

    annotator = _call(case, tokens["annotator"])
    if _is_staff_only(case):
        assert annotator.status_code == 403, f"{label} answered {annotator.status_code} to an annotator"
    else:
        case.validate_response(annotator, checks=[not_a_server_error])

    staff = _call(case, tokens["staff"])
    case.validate_response(staff, checks=[not_a_server_error])


@schema.parametrize()
@hypothesis.seed(SEED)
@FUZZ_SETTINGS
def test_no_request_the_document_allows_is_a_server_error(case: schemathesis.Case, tokens: dict[str, str]) -> None:
    _check(case, tokens)
