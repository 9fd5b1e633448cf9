"""Annotator accounts and their API tokens."""

from __future__ import annotations

from django.contrib.auth.models import User

from annotate.models import ApiToken


def annotator_create(*, username: str, password: str, staff: bool = False) -> User:
    """Create a user who can judge, or update the password and role of one who exists."""
    if not username.strip():
        raise ValueError("username must not be empty")
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.is_staff = staff
    user.is_superuser = staff
    user.save()
    return user


def api_token_get_or_create(*, user: User) -> str:
    token, _ = ApiToken.objects.get_or_create(user=user)
    return token.key
