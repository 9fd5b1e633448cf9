"""Every response carries the strict Content-Security-Policy, not only the app's own pages."""

import pytest

from config.middleware import CONTENT_SECURITY_POLICY
from tests.annotate.factories import StaffFactory

pytestmark = pytest.mark.django_db


def test_a_404_page_carries_the_policy(client):
    client.force_login(StaffFactory())
    response = client.get("/annotate/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_the_login_page_carries_the_policy(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_the_rq_dashboard_keeps_its_inline_scripts_working(client):
    client.force_login(StaffFactory(is_superuser=True))
    response = client.get("/django-rq/")
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response
