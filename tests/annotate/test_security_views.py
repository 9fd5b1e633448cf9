"""The API tokens page (each user's own) and the staff's audit log page."""

import pytest

from annotate import services
from annotate.models import ApiToken, AuditAction, AuditEntry
from tests.annotate.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_client(client):
    user = UserFactory()
    client.force_login(user)
    client.user = user
    return client


def test_the_tokens_page_needs_a_login(client):
    assert client.get("/accounts/tokens/")["Location"].startswith("/accounts/login/")


def test_a_new_token_is_shown_once_and_opens_the_api(user_client):
    page = user_client.post("/accounts/tokens/new/").content.decode()
    (token,) = ApiToken.objects.filter(user=user_client.user)
    key = page.split('data-testid="new-token">', 1)[1].split("<", 1)[0]
    assert key.startswith(token.prefix)
    assert key not in user_client.get("/accounts/tokens/").content.decode()
    assert user_client.get("/api/v1/comparisons/next", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 204


def test_the_page_that_shows_a_token_is_not_cached(user_client):
    assert "no-store" in user_client.post("/accounts/tokens/new/")["Cache-Control"]


def test_the_page_lists_only_the_users_own_tokens(user_client):
    mine = services.api_token_create(user=user_client.user).record
    theirs = services.api_token_create(user=UserFactory()).record
    page = user_client.get("/accounts/tokens/").content.decode()
    assert mine.prefix in page
    assert theirs.prefix not in page


def test_revoking_from_the_page_deletes_the_token(user_client):
    issued = services.api_token_create(user=user_client.user)
    assert user_client.post(f"/accounts/tokens/{issued.record.prefix}/revoke/").status_code == 200
    assert not ApiToken.objects.exists()


def test_nobody_revokes_another_users_token_from_the_page(user_client):
    issued = services.api_token_create(user=UserFactory())
    assert user_client.post(f"/accounts/tokens/{issued.record.prefix}/revoke/").status_code == 404
    assert ApiToken.objects.count() == 1


def test_rotating_from_the_page_leaves_one_new_token(user_client):
    old = services.api_token_create(user=user_client.user)
    user_client.post("/accounts/tokens/rotate/")
    (token,) = ApiToken.objects.all()
    assert token.pk != old.record.pk


def test_token_changes_are_refused_by_get(user_client):
    assert user_client.get("/accounts/tokens/new/").status_code == 405


def test_annotators_cannot_see_the_audit_log(user_client):
    assert user_client.get("/staff/audit/").status_code == 403


def test_the_audit_log_needs_a_login(client):
    assert client.get("/staff/audit/")["Location"].startswith("/accounts/login/")


def test_staff_see_the_audit_log(client):
    staff = StaffFactory()
    client.force_login(staff)
    AuditEntry.objects.create(actor=staff, actor_name=staff.username, action=AuditAction.EXPORT, target_label="out")
    page = client.get("/staff/audit/").content.decode()
    assert staff.username in page
    assert "Exported preferences" in page


def test_staff_see_the_audit_log_in_the_nav(client):
    client.force_login(StaffFactory())
    assert 'href="/staff/audit/"' in client.get("/annotate/stats/").content.decode()


def test_the_admin_lists_the_audit_log_read_only(client):
    client.force_login(StaffFactory(is_superuser=True))
    AuditEntry.objects.create(actor_name="someone", action=AuditAction.EXPORT)
    assert client.get("/admin/annotate/auditentry/").status_code == 200
    assert client.get("/admin/annotate/auditentry/add/").status_code == 403
