"""Accounts: a user's API tokens, the audit log, and the login throttle's count."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone

from annotate.models import (
    ApiToken,
    AuditEntry,
    LoginFailure,
)

# Accounts, tokens and the audit log --------------------------------------------------------


def api_tokens_of(*, user: User) -> QuerySet[ApiToken]:
    """A user's tokens, newest first (their prefixes and expiry; the tokens themselves are not kept)."""
    return ApiToken.objects.filter(user=user)


def audit_entries() -> QuerySet[AuditEntry]:
    """The audit log, newest first."""
    return AuditEntry.objects.all()


def login_retry_after(*, username: str, ip: str | None) -> int | None:
    """Seconds until a sign-in as ``username`` from ``ip`` may be tried again; ``None`` when it may now.

    Each limit is reached when that many failures fall within the window, and lifts when the
    oldest of the most recent ``limit`` failures leaves it.
    """
    now = timezone.now()
    window = timedelta(seconds=settings.DUET_LOGIN_WINDOW_SECONDS)
    recent = LoginFailure.objects.filter(created_at__gte=now - window).order_by("-created_at")
    waits: list[int] = []
    for failures, limit in (
        (recent.filter(username=username), settings.DUET_LOGIN_FAILURES_PER_USER),
        (recent.filter(ip=ip) if ip else recent.none(), settings.DUET_LOGIN_FAILURES_PER_IP),
    ):
        limiting = failures.values_list("created_at", flat=True)[limit - 1 : limit]
        waits.extend(max(1, int((at + window - now).total_seconds()) + 1) for at in limiting)
    return max(waits) if waits else None
