"""The project's settings plus the benchmark's own URLs (a trivial view to compare against)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
