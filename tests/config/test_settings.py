"""Production settings switch on from the environment, and Django's deployment check passes with them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management.utils import get_random_secret_key

PRODUCTION = {"DUET_PRODUCTION": "1", "DJANGO_ALLOWED_HOSTS": "duet.example.org"}


def _manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DUET_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**clean, "DUET_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _print_settings(names: str, env: dict[str, str], tmp_path: Path) -> str:
    code = f"from django.conf import settings; print([getattr(settings, n) for n in {names.split()!r}])"
    return _manage("shell", "--no-imports", "-c", code, env=env, tmp_path=tmp_path).stdout.strip()


def test_the_deployment_check_passes_in_production(tmp_path: Path) -> None:
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": get_random_secret_key()}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deployment_check_fails_outside_production(tmp_path: Path) -> None:
    env = {"DJANGO_SECRET_KEY": get_random_secret_key()}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode != 0


def test_production_secures_cookies_and_trusts_the_proxys_scheme(tmp_path: Path) -> None:
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": get_random_secret_key()}
    names = "SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_PROXY_SSL_HEADER CSRF_TRUSTED_ORIGINS"
    expected = [True, True, ("HTTP_X_FORWARDED_PROTO", "https"), ["https://duet.example.org"]]
    assert _print_settings(names, env, tmp_path) == str(expected)


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"])
def test_production_refuses_to_start_without(tmp_path: Path, missing: str) -> None:
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": get_random_secret_key()}
    del env[missing]
    result = _manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert missing in result.stderr


def test_no_secret_key_is_in_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=settings.BASE_DIR, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [name for name in tracked if Path(name).name in {"secret_key", ".env"}]
