"""Accounts and API tokens: roles, tokens kept only as digests, expiry, rotation and revocation."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate import selectors, services
from annotate.models import ApiToken, token_digest
from tests.annotate.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_staff_is_not_a_superuser():
    user = services.annotator_create(username="sam", password="long-enough-pw", staff=True)
    assert (user.is_staff, user.is_superuser) == (True, False)


def test_a_superuser_is_staff_too():
    user = services.annotator_create(username="root", password="long-enough-pw", superuser=True)
    assert (user.is_staff, user.is_superuser) == (True, True)


def test_making_an_annotator_again_takes_staff_away():
    services.annotator_create(username="sam", password="long-enough-pw", superuser=True)
    user = services.annotator_create(username="sam", password="long-enough-pw")
    assert (user.is_staff, user.is_superuser) == (False, False)


def test_a_token_is_stored_only_as_its_digest():
    issued = services.api_token_create(user=UserFactory())
    stored = ApiToken.objects.get()
    assert stored.digest == token_digest(issued.key)
    assert issued.key not in {str(value) for value in vars(stored).values()}


def test_a_token_never_expires_without_a_lifetime(settings):
    settings.DUET_TOKEN_LIFETIME_DAYS = None
    assert services.api_token_create(user=UserFactory()).record.expires_at is None


def test_a_token_expires_after_the_configured_lifetime(settings):
    settings.DUET_TOKEN_LIFETIME_DAYS = 30
    expires_at = services.api_token_create(user=UserFactory()).record.expires_at
    assert expires_at is not None
    assert abs(expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)


def test_a_user_may_hold_several_tokens():
    user = UserFactory()
    keys = {services.api_token_create(user=user).key for _ in range(2)}
    assert len(keys) == 2
    assert selectors.api_tokens_of(user=user).count() == 2


def test_rotating_leaves_only_the_new_token():
    user = UserFactory()
    services.api_token_create(user=user)
    services.api_token_create(user=user)
    issued = services.api_token_rotate(user=user)
    assert list(ApiToken.objects.filter(user=user)) == [issued.record]


def test_rotating_leaves_other_users_tokens_alone():
    other = services.api_token_create(user=UserFactory())
    services.api_token_rotate(user=UserFactory())
    assert ApiToken.objects.filter(pk=other.record.pk).exists()


def test_revoking_deletes_the_token_with_that_prefix():
    user = UserFactory()
    kept, revoked = services.api_token_create(user=user), services.api_token_create(user=user)
    services.api_token_revoke(user=user, prefix=revoked.record.prefix)
    assert list(ApiToken.objects.all()) == [kept.record]


def test_nobody_revokes_another_users_token():
    issued = services.api_token_create(user=UserFactory())
    with pytest.raises(ApiToken.DoesNotExist):
        services.api_token_revoke(user=UserFactory(), prefix=issued.record.prefix)
    assert ApiToken.objects.count() == 1


def test_no_token_starts_with_a_dash(monkeypatch):
    user = UserFactory()
    draws = iter(["-looks-like-an-option", "a-fine-token"])
    monkeypatch.setattr("annotate.models.core.secrets.token_urlsafe", lambda n: next(draws))
    assert services.api_token_create(user=user).key == "a-fine-token"
