"""The migration to hashed tokens keeps every plaintext token that people already hold working."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

HASHING_MIGRATION_SUFFIX = "_hashed_tokens_audit"


def _migrate(targets):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def test_a_plaintext_token_still_opens_the_api_after_the_migration(client):
    graph = MigrationExecutor(connection).loader.graph
    (hashing,) = [n for n in graph.nodes if n[0] == "annotate" and n[1].endswith(HASHING_MIGRATION_SUFFIX)]
    before = next(p for p in graph.node_map[hashing].parents if p.key[0] == "annotate").key
    old = _migrate([before])
    user = old.get_model("auth", "User").objects.create(username="old-timer")
    old.get_model("annotate", "ApiToken").objects.create(user_id=user.pk, key="a-token-from-before-hashing")

    _migrate(graph.leaf_nodes())

    response = client.get("/api/v1/comparisons/next", HTTP_AUTHORIZATION="Bearer a-token-from-before-hashing")
    assert response.status_code == 204
