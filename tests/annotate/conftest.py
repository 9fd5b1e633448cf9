import pytest
from django.db import connection

from annotate.services import _shared


@pytest.fixture(params=["one statement", "portable"])
def hot_path(request, monkeypatch):
    """Runs a test through both versions of ``next`` and ``judge``: one SQL statement (PostgreSQL) and the ORM's."""
    if request.param == "one statement" and connection.vendor != "postgresql":
        pytest.skip("the single-statement path runs on PostgreSQL")
    monkeypatch.setattr(_shared, "single_statement", lambda: request.param == "one statement")
