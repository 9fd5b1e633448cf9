"""Data migrations lose nothing: plaintext tokens keep working once hashed, and every comparison and prompt
from before campaigns lands in the default campaign."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from annotate.limits import DEFAULT_CAMPAIGN_SLUG

pytestmark = pytest.mark.django_db(transaction=True)

HASHING_MIGRATION_SUFFIX = "_hashed_tokens_audit"
CAMPAIGNS_MIGRATION_SUFFIX = "_campaigns"


def _migrate(targets):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def _before(suffix: str):  # type: ignore[no-untyped-def]
    """The graph, and the annotate migration just before the one whose name ends with ``suffix``."""
    graph = MigrationExecutor(connection).loader.graph
    (node,) = [n for n in graph.nodes if n[0] == "annotate" and n[1].endswith(suffix)]
    return graph, next(p for p in graph.node_map[node].parents if p.key[0] == "annotate").key


def test_a_plaintext_token_still_opens_the_api_after_the_migration(client):
    graph, before = _before(HASHING_MIGRATION_SUFFIX)
    old = _migrate([before])
    user = old.get_model("auth", "User").objects.create(username="old-timer")
    old.get_model("annotate", "ApiToken").objects.create(user_id=user.pk, key="a-token-from-before-hashing")

    _migrate(graph.leaf_nodes())

    response = client.get("/api/v1/comparisons/next", HTTP_AUTHORIZATION="Bearer a-token-from-before-hashing")
    assert response.status_code == 204


def test_comparisons_and_prompts_from_before_campaigns_move_into_the_default_campaign():
    graph, before = _before(CAMPAIGNS_MIGRATION_SUFFIX)
    old = _migrate([before])
    prompt_model, completion_model = old.get_model("annotate", "Prompt"), old.get_model("annotate", "Completion")
    prompts = [prompt_model.objects.create(messages=[{"role": "user", "content": f"q{i}"}], content_hash=f"p{i}")
               for i in range(3)]
    a, b = (completion_model.objects.create(prompt=prompts[0], messages=[], text=t, content_hash=t) for t in "ab")
    old.get_model("annotate", "Comparison").objects.create(
        prompt=prompts[0], completion_a=a, completion_b=b, content_hash="ab", target_judgements=3
    )

    new = _migrate(graph.leaf_nodes())

    (campaign,) = new.get_model("annotate", "Campaign").objects.all()
    assert campaign.slug == DEFAULT_CAMPAIGN_SLUG
    comparison = new.get_model("annotate", "Comparison").objects.get()
    assert (comparison.campaign_id, comparison.target_judgements) == (campaign.pk, 3)
    assert sorted(campaign.prompts.values_list("pk", flat=True)) == [p.pk for p in prompts]
