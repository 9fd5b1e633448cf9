"""Duet settings. Everything that differs between machines comes from the environment.

Defaults are the newcomer's laptop: SQLite in ``var/`` and an embedded Redis on a unix
socket in ``var/`` (started by ``scripts/start``). ``DATABASE_URL`` and ``REDIS_URL``
switch to real services.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from config.queues import gpu_queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DUET_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    """The key from the environment, else one made once per checkout and kept out of git."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Behind HTTPS in production: secure cookies, HSTS, the proxy's scheme header, and no fallbacks
# for the secret key or the host names (see the production block below).
DUET_PRODUCTION = _env_bool("DUET_PRODUCTION", False)
SECRET_KEY = _secret_key()
DEBUG = _env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_rq",
    "ninja",
    "annotate",
    "training",
]

MIDDLEWARE = [
    "config.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.AuditActorMiddleware",
    "config.middleware.LoginRequiredExceptApiMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'duet.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if test_db_name := os.environ.get("DUET_TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": test_db_name}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes SQLite's write lock when a transaction opens, so a read-then-write
    # in one atomic block cannot act on a stale read; the timeout waits for it.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not shared-cache memory: only a file gets SQLite's busy timeout under threads.
    # One per process, so two test runs on one checkout never share it.
    DATABASES["default"].setdefault("TEST", {}).setdefault("NAME", str(VAR_DIR / f"test-{os.getpid()}.sqlite3"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/annotate/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

if DUET_PRODUCTION:
    if "DJANGO_SECRET_KEY" not in os.environ:
        raise ImproperlyConfigured("DUET_PRODUCTION needs DJANGO_SECRET_KEY from the environment")
    if "DJANGO_ALLOWED_HOSTS" not in os.environ:
        raise ImproperlyConfigured("DUET_PRODUCTION needs DJANGO_ALLOWED_HOSTS (the site's host names)")
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be off when DUET_PRODUCTION is on")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    # The TLS-terminating proxy in front says which scheme the browser used; it must overwrite
    # any X-Forwarded-Proto the client sent.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # A year, the length browsers' preload lists ask for.
    SECURE_HSTS_SECONDS = int(os.environ.get("DUET_HSTS_SECONDS", str(365 * 24 * 60 * 60)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DUET_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = _env_bool("DUET_HSTS_PRELOAD", True)
    CSRF_TRUSTED_ORIGINS = CSRF_TRUSTED_ORIGINS or [f"https://{host.lstrip('.')}" for host in ALLOWED_HOSTS]

# Password reset mails a link, so its pages exist only where a mail server is configured.
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("DJANGO_EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("DJANGO_EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "duet@localhost")
DUET_PASSWORD_RESET = bool(EMAIL_HOST)

# API tokens expire this many days after they are made; unset, they last until revoked.
DUET_TOKEN_LIFETIME_DAYS = int(days) if (days := os.environ.get("DUET_TOKEN_LIFETIME_DAYS")) else None

# Login throttle: after this many failed sign-ins within the window, further attempts for that
# username (or from that address) are refused until the oldest failure leaves the window. The
# per-address limit is higher because one office or proxy address is shared by many people.
DUET_LOGIN_WINDOW_SECONDS = int(os.environ.get("DUET_LOGIN_WINDOW_SECONDS", str(15 * 60)))
DUET_LOGIN_FAILURES_PER_USER = int(os.environ.get("DUET_LOGIN_FAILURES_PER_USER", "5"))
DUET_LOGIN_FAILURES_PER_IP = int(os.environ.get("DUET_LOGIN_FAILURES_PER_IP", "20"))
# How many reverse proxies in front append to X-Forwarded-For; 0 trusts only the socket's address.
DUET_TRUSTED_PROXIES = int(os.environ.get("DUET_TRUSTED_PROXIES", "1" if DUET_PRODUCTION else "0"))

# Redis: the real service when REDIS_URL is set, else the embedded one that scripts/start runs.
REDIS_URL = os.environ.get("REDIS_URL", f"unix://{VAR_DIR / 'redis.sock'}?db=0")
# The most processes (GPUs) one training run may ask for; a queue gpu-x{N} exists for each N up to it.
DUET_MAX_PROCESSES_PER_RUN = int(os.environ.get("DUET_MAX_PROCESSES_PER_RUN", "8"))
# The GPUs this host's worker has (on a CPU host: the gloo processes a run may start); unset: torch counts them.
# The name a worker records on the work it takes (generation shards): the machine's, unless a deployment (or a
# test playing several hosts on one machine) names it.
DUET_HOST_NAME = os.environ.get("DUET_HOST_NAME") or socket.gethostname()
DUET_GPUS = int(os.environ["DUET_GPUS"]) if os.environ.get("DUET_GPUS") else None
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
    # Training and generation: one job at a time per worker, long timeouts for long runs; gpu-x{N} holds the
    # runs that need N GPUs.
    **{
        gpu_queue(processes): {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 60 * 60 * 24}
        for processes in range(1, DUET_MAX_PROCESSES_PER_RUN + 1)
    },
}
RQ_SHOW_ADMIN_LINK = True
# Every worker also fails the runs of dead workers (a deployment may run workers without `serve`).
RQ = {"WORKER_CLASS": "training.jobs.Worker"}

# Training and generation runs.
DUET_RUNS_DIR = Path(os.environ.get("DUET_RUNS_DIR", VAR_DIR / "runs"))
# The artifact store all hosts share (an fsspec URL: file:///shared/folder or s3://bucket/prefix) and
# this host's cache of fetched folders, keyed by content hash.
DUET_ARTIFACTS = os.environ.get("DUET_ARTIFACTS", f"file://{(VAR_DIR / 'artifacts').resolve()}")
DUET_ARTIFACTS_ENDPOINT_URL = (
    os.environ.get("DUET_ARTIFACTS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
)  # S3-compatible stores
DUET_CACHE = Path(os.environ.get("DUET_CACHE", VAR_DIR / "cache"))
DUET_JOB_TIMEOUT = int(os.environ.get("DUET_JOB_TIMEOUT", str(60 * 60 * 24)))
DUET_HEARTBEAT_SECONDS = float(os.environ.get("DUET_HEARTBEAT_SECONDS", "10"))
DUET_HEARTBEAT_TIMEOUT = float(os.environ.get("DUET_HEARTBEAT_TIMEOUT", "45"))
# A training run writes its progress, metrics and log at most this often (and reads its cancel flag then).
DUET_PROGRESS_SECONDS = float(os.environ.get("DUET_PROGRESS_SECONDS", "2"))
# A cancelled run on several processes gets this long to finish its step and save a checkpoint before it is killed.
DUET_CANCEL_GRACE_SECONDS = float(os.environ.get("DUET_CANCEL_GRACE_SECONDS", "60"))
# A generation round is cut into shards of about this many prompts (whole chunks of 16), one RQ job each,
# so that every worker on the gpu queue takes a part of it.
DUET_GENERATION_SHARD_PROMPTS = int(os.environ.get("DUET_GENERATION_SHARD_PROMPTS", "64"))
if DUET_GENERATION_SHARD_PROMPTS < 1:
    raise ImproperlyConfigured(f"DUET_GENERATION_SHARD_PROMPTS must be at least 1, got {DUET_GENERATION_SHARD_PROMPTS}")

# Annotation behaviour.
DUET_JUDGEMENTS_PER_COMPARISON = int(os.environ.get("DUET_JUDGEMENTS_PER_COMPARISON", "1"))
DUET_LEASE_SECONDS = int(os.environ.get("DUET_LEASE_SECONDS", "600"))
DUET_MAX_TEXT_CHARS = int(os.environ.get("DUET_MAX_TEXT_CHARS", "100000"))
DUET_EVAL_TAG = os.environ.get("DUET_EVAL_TAG", "eval")  # prompts held out for evaluation rounds, never trained on
# A vote this soon after its card was shown counts as rushed on the stats page: reading two answers takes longer.
DUET_RUSHED_SECONDS = float(os.environ.get("DUET_RUSHED_SECONDS", "3"))
# An export of more comparisons than this runs as a job on the ``default`` queue instead of inside the request:
# 2,000 rows took 0.2 s of CPU as JSONL and 0.65 s as Parquet or an hf folder (2-core machine, SQLite, 2026-12-02).
DUET_EXPORT_INLINE_MAX_ROWS = int(os.environ.get("DUET_EXPORT_INLINE_MAX_ROWS", "2000"))
# An export job's scratch folder on the worker's host: the file is written here, published into the artifact
# store (``exports/<job id>/``), then removed.
DUET_EXPORTS_DIR = Path(os.environ.get("DUET_EXPORTS_DIR", VAR_DIR / "exports"))
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DUET_LOG_LEVEL", "WARNING")},
}
