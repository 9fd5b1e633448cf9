"""The account pages: password reset exists only where mail can be sent."""

import pytest
from django.urls import reverse

from config.urls import account_urls

pytestmark = pytest.mark.django_db

RESET_NAMES = {"password_reset", "password_reset_done", "password_reset_confirm", "password_reset_complete"}


def _names(*, password_reset: bool) -> set[str]:
    return {pattern.name for pattern in account_urls(password_reset=password_reset)}


def test_without_mail_there_are_no_reset_pages():
    assert not _names(password_reset=False) & RESET_NAMES


def test_with_mail_every_reset_page_is_there():
    assert _names(password_reset=True) >= RESET_NAMES


def test_the_default_settings_serve_no_reset_page(client, settings):
    assert settings.DUET_PASSWORD_RESET is False
    assert client.get("/accounts/password_reset/").status_code == 404


def test_the_login_page_is_the_throttled_one(client):
    assert client.get(reverse("login")).status_code == 200
