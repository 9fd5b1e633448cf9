"""Accounts and their API tokens. A token is shown once, when it is made; only its digest is kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from annotate.models import TOKEN_PREFIX_CHARS, ApiToken, AuditAction, new_token_key, token_digest
from annotate.services.audit import audit_record


def annotator_create(*, username: str, password: str, staff: bool = False, superuser: bool = False) -> User:
    """Create a user who can judge, or update the password and role of one who exists.

    Staff may import, export, train and generate; only a superuser also holds every permission
    in the Django admin, so ``staff`` alone never grants it.
    """
    if not username.strip():
        raise ValueError("username must not be empty")
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.is_staff = staff or superuser
    user.is_superuser = superuser
    user.save()
    return user


@dataclass(frozen=True)
class IssuedToken:
    """A token just made: ``key`` is the bearer token, which nothing stores and nobody sees again."""

    record: ApiToken
    key: str


def _token_issue(*, user: User) -> IssuedToken:
    key = new_token_key()
    lifetime = settings.DUET_TOKEN_LIFETIME_DAYS
    record = ApiToken.objects.create(
        user=user,
        digest=token_digest(key),
        prefix=key[:TOKEN_PREFIX_CHARS],
        expires_at=timezone.now() + timedelta(days=lifetime) if lifetime is not None else None,
    )
    return IssuedToken(record=record, key=key)


def api_token_create(*, user: User) -> IssuedToken:
    """Make one more token for ``user``; it expires after ``DUET_TOKEN_LIFETIME_DAYS`` when that is set."""
    with transaction.atomic():
        issued = _token_issue(user=user)
        audit_record(action=AuditAction.TOKEN_CREATE, target=issued.record, detail={"owner": user.get_username()})
    return issued


def api_token_rotate(*, user: User) -> IssuedToken:
    """Revoke every token of ``user`` and make one new one, atomically."""
    with transaction.atomic():
        revoked = [t.prefix for t in ApiToken.objects.select_for_update().filter(user=user)]
        ApiToken.objects.filter(user=user).delete()
        issued = _token_issue(user=user)
        audit_record(
            action=AuditAction.TOKEN_ROTATE,
            target=issued.record,
            detail={"owner": user.get_username(), "revoked": revoked},
        )
    return issued


def api_token_revoke(*, user: User, prefix: str) -> None:
    """Delete the token of ``user`` that starts with ``prefix``; ``ApiToken.DoesNotExist`` when none does."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(user=user, prefix=prefix)
        audit_record(action=AuditAction.TOKEN_REVOKE, target=token, detail={"owner": user.get_username()})
        token.delete()
