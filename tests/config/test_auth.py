"""Bearer tokens (kept as digests, expiring, revocable) and the throttled login."""

from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.utils import timezone

from annotate import services
from annotate.models import ApiToken, LoginFailure
from config.auth import client_ip
from tests.annotate.factories import UserFactory

pytestmark = pytest.mark.django_db

NEXT = "/api/v1/comparisons/next"
PASSWORD = "correct-horse-battery"  # the factories' password


def _get_next(client, key):
    return client.get(NEXT, HTTP_AUTHORIZATION=f"Bearer {key}")


def _log_in(client, username, password, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


# Bearer tokens ------------------------------------------------------------------------------


def test_a_new_token_opens_the_api(client):
    assert _get_next(client, services.api_token_create(user=UserFactory()).key).status_code == 204


def test_the_stored_digest_is_not_a_token(client):
    services.api_token_create(user=UserFactory())
    assert _get_next(client, ApiToken.objects.get().digest).status_code == 401


def test_an_expired_token_is_refused(client):
    issued = services.api_token_create(user=UserFactory())
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _get_next(client, issued.key).status_code == 401


def test_a_token_before_its_expiry_is_accepted(client):
    issued = services.api_token_create(user=UserFactory())
    ApiToken.objects.update(expires_at=timezone.now() + timedelta(minutes=5))
    assert _get_next(client, issued.key).status_code == 204


def test_a_revoked_token_is_refused(client):
    user = UserFactory()
    issued = services.api_token_create(user=user)
    services.api_token_revoke(user=user, prefix=issued.record.prefix)
    assert _get_next(client, issued.key).status_code == 401


def test_rotating_refuses_the_old_token_and_accepts_the_new(client):
    user = UserFactory()
    old = services.api_token_create(user=user)
    new = services.api_token_rotate(user=user)
    assert (_get_next(client, old.key).status_code, _get_next(client, new.key).status_code) == (401, 204)


# The login throttle -------------------------------------------------------------------------


def test_a_wrong_password_is_counted(client):
    UserFactory(username="ann")
    assert _log_in(client, "ann", "wrong").status_code == 200
    assert LoginFailure.objects.filter(username="ann").count() == 1


def test_after_the_limit_of_failures_a_username_is_refused_with_429(client, settings):
    settings.DUET_LOGIN_FAILURES_PER_USER = 3
    UserFactory(username="ann")
    for _ in range(3):
        _log_in(client, "ann", "wrong")
    response = _log_in(client, "ann", PASSWORD)
    assert response.status_code == 429
    assert "Try again in 15 minutes" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_username_limit_holds_whatever_its_case(client, settings):
    settings.DUET_LOGIN_FAILURES_PER_USER = 2
    for name in ("Ann", "ANN"):
        _log_in(client, name, "wrong")
    assert _log_in(client, "ann", "wrong").status_code == 429


def test_a_username_below_the_limit_signs_in(client, settings):
    settings.DUET_LOGIN_FAILURES_PER_USER = 3
    UserFactory(username="ann")
    for _ in range(2):
        _log_in(client, "ann", "wrong")
    assert _log_in(client, "ann", PASSWORD).status_code == 302


def test_failures_older_than_the_window_no_longer_count(client, settings):
    settings.DUET_LOGIN_FAILURES_PER_USER = 2
    UserFactory(username="ann")
    for _ in range(2):
        _log_in(client, "ann", "wrong")
    LoginFailure.objects.update(created_at=timezone.now() - timedelta(seconds=settings.DUET_LOGIN_WINDOW_SECONDS + 1))
    assert _log_in(client, "ann", PASSWORD).status_code == 302


def test_signing_in_forgets_that_usernames_failures(client, settings):
    UserFactory(username="ann")
    _log_in(client, "ann", "wrong")
    _log_in(client, "ann", PASSWORD)
    assert not LoginFailure.objects.filter(username="ann").exists()


def test_after_the_limit_of_failures_an_address_is_refused_for_every_username(client, settings):
    settings.DUET_LOGIN_FAILURES_PER_IP = 3
    UserFactory(username="bob")
    for name in ("x", "y", "z"):
        _log_in(client, name, "wrong", REMOTE_ADDR="10.0.0.9")
    assert _log_in(client, "bob", PASSWORD, REMOTE_ADDR="10.0.0.9").status_code == 429
    assert _log_in(client, "bob", PASSWORD, REMOTE_ADDR="10.0.0.10").status_code == 302


def test_the_admin_login_shares_the_throttle(client, settings):
    settings.DUET_LOGIN_FAILURES_PER_USER = 1
    UserFactory(username="ann", is_staff=True)
    _log_in(client, "ann", "wrong")
    response = client.post("/admin/login/", {"username": "ann", "password": PASSWORD})
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_without_trusted_proxies_the_address_is_the_sockets(settings):
    settings.DUET_TRUSTED_PROXIES = 0
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert client_ip(request) == "10.0.0.1"


def test_behind_one_proxy_the_address_is_the_one_it_appended(settings):
    settings.DUET_TRUSTED_PROXIES = 1
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    assert client_ip(request) == "203.0.113.7"
