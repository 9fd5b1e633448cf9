"""The audit log: one line per staff action, saying who did what to which object, and when.

The services that perform staff actions call ``audit_record`` themselves, so every caller (page,
API, command) is covered by one line. Who acted comes from the request being served, which
``config.middleware.AuditActorMiddleware`` binds for its duration; a command or a worker acts
without one and is named by its operating-system user.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.http import HttpRequest

from annotate.models import AuditEntry

_current_request: ContextVar[HttpRequest | None] = ContextVar("duet_audit_request", default=None)


@contextmanager
def audit_request_bound(request: HttpRequest) -> Iterator[None]:
    """Make ``request``'s user the actor of whatever is audited while it is served."""
    reset = _current_request.set(request)
    try:
        yield
    finally:
        _current_request.reset(reset)


def _actor() -> tuple[User | None, str]:
    request = _current_request.get()
    user: User | AnonymousUser | None = getattr(request, "user", None)
    if isinstance(user, User) and user.is_authenticated:
        return user, user.get_username()
    return None, f"os:{getpass.getuser()}"


def audit_record(
    *, action: str, target: models.Model | None = None, detail: dict[str, Any] | None = None
) -> AuditEntry:
    """Write one audit line for ``action`` on ``target`` by the current actor."""
    actor, actor_name = _actor()
    return AuditEntry.objects.create(
        actor=actor,
        actor_name=actor_name[:150],
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:200] if target is not None else "",
        detail=detail or {},
    )
