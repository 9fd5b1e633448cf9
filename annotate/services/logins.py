"""The login throttle's writes: failed sign-ins are counted per username and per address.

The limits live in settings (``DUET_LOGIN_*``); ``annotate.selectors.login_retry_after`` reads them.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from annotate.models import LoginFailure


def login_failure_record(*, username: str, ip: str | None) -> None:
    """Count one failed sign-in, and forget the failures that have left the window."""
    cutoff = timezone.now() - timedelta(seconds=settings.DUET_LOGIN_WINDOW_SECONDS)
    LoginFailure.objects.filter(created_at__lt=cutoff).delete()
    LoginFailure.objects.create(username=username[:150], ip=ip)


def login_failures_clear(*, username: str) -> None:
    """A successful sign-in forgets that username's failures (not its address's: others may share it)."""
    LoginFailure.objects.filter(username=username).delete()
