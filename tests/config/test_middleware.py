"""Every response carries the strict Content-Security-Policy and the security headers, not only the
app's own pages; and a request names its user as the actor of what it audits."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from annotate import services
from annotate.models import AuditAction, AuditEntry
from config.middleware import API_DOCS_POLICY, CONTENT_SECURITY_POLICY
from tests.annotate.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _assert_protected(response, policy=CONTENT_SECURITY_POLICY):
    assert response["Content-Security-Policy"] == policy
    assert {name: response.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


def test_a_404_page_carries_the_policy(client):
    client.force_login(StaffFactory())
    response = client.get("/annotate/no-such-page/")
    assert response.status_code == 404
    _assert_protected(response)


def test_a_500_page_carries_the_policy(settings):
    settings.ROOT_URLCONF = "tests.config.urls_raising"
    client = Client(raise_request_exception=False)
    client.force_login(StaffFactory())
    response = client.get("/boom/")
    assert response.status_code == 500
    _assert_protected(response)


def test_a_403_page_carries_the_policy(client):
    client.force_login(UserFactory())
    response = client.get("/annotate/stats/")
    assert response.status_code == 403
    _assert_protected(response)


def test_a_csrf_refusal_carries_the_policy():
    response = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403
    _assert_protected(response)


def test_the_login_page_carries_the_policy(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    _assert_protected(response)


def test_an_api_error_carries_the_policy(client):
    response = client.get("/api/v1/comparisons/next")
    assert response.status_code == 401
    _assert_protected(response)


def test_the_api_docs_carry_their_policy(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    _assert_protected(response, API_DOCS_POLICY)


def test_the_api_docs_policy_adds_only_data_images():
    strict = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    docs = dict(d.split(" ", 1) for d in API_DOCS_POLICY.split("; "))
    assert {k: v for k, v in docs.items() if strict[k] != v} == {"img-src": "'self' data:"}


def test_the_api_docs_load_only_local_assets_that_exist(client):
    page = client.get("/api/v1/docs").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets
    assert all(a.startswith("/static/") for a in assets), assets
    assert all(finders.find(a.removeprefix("/static/")) for a in assets)


def test_the_api_docs_run_no_inline_script(client):
    page = client.get("/api/v1/docs").content.decode()
    inline = [attrs for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S) if body.strip()]
    assert all('type="application/json"' in attrs for attrs in inline)


def test_the_rq_dashboard_keeps_its_inline_scripts_working(client):
    client.force_login(StaffFactory(is_superuser=True))
    response = client.get("/django-rq/")
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response


def test_a_page_names_its_signed_in_user_in_the_audit_log(client, write_jsonl):
    staff = StaffFactory()
    client.force_login(staff)
    with write_jsonl([{"prompt": "Hi?"}]).open("rb") as upload:
        client.post("/annotate/import/", {"kind": "prompts", "file": upload})
    assert AuditEntry.objects.get().actor == staff


def test_the_api_names_the_tokens_owner_in_the_audit_log(client):
    staff = StaffFactory()
    bearer = f"Bearer {services.api_token_create(user=staff).key}"
    response = client.get("/api/v1/export?format=jsonl", HTTP_AUTHORIZATION=bearer)
    assert response.status_code == 200
    assert AuditEntry.objects.get(action=AuditAction.EXPORT).actor == staff
