"""``private_queues``: two test runs on one Redis never share a database, so never take each other's jobs."""

from __future__ import annotations

from django.conf import settings

from tests.conftest import redis_db_claim


def test_two_runs_claim_different_databases():
    first, release_first = redis_db_claim(settings.REDIS_URL)
    second, release_second = redis_db_claim(settings.REDIS_URL)
    try:
        assert first != second
        assert settings.REDIS_URL not in (first, second), "the run's own database is never lent out"
    finally:
        release_second()
        release_first()


def test_a_released_database_can_be_claimed_again():
    first, release = redis_db_claim(settings.REDIS_URL)
    release()
    again, release_again = redis_db_claim(settings.REDIS_URL)
    release_again()
    assert again == first
