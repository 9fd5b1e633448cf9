"""Issue 10's target: scripted annotators through the real API on a campaign with gold items.

Two consistent annotators (always the better answer) and one who clicks at random judge 100 cards
each, served by a live server, round-robin. The random one must end up flagged with a gold
accuracy near one half, the consistent ones not; agreement with all three must be clearly below
agreement without the random one; and the default export must leave the random one's votes out
while the flagged filter brings them back.

The figures are seeded: with 40 gold items at rate 0.3, a person answering at random sees about
30 of them, and the chance that their accuracy stays at or above 0.75 after the 8th (so they are
never flagged) is under 0.1% (simulated); the seed makes the run repeatable anyway.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from annotate import selectors, services
from annotate.filters import EVERY_JUDGEMENT, TRUSTED_JUDGEMENTS
from annotate.models import AnnotatorFlag, Judgement, Outcome
from tests.annotate.factories import (
    CampaignFactory,
    ComparisonFactory,
    CompletionFactory,
    GoldComparisonFactory,
    PromptFactory,
    StaffFactory,
    UserFactory,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.django_db(transaction=True)]

SLUG = "helpfulness"
GOLD_ITEMS = 40
ORDINARY = 110
JUDGEMENTS_EACH = 100


def _pair(campaign, index: int, rng: random.Random, factory) -> None:
    prompt = PromptFactory()
    campaign.prompts.add(prompt)
    good = CompletionFactory(prompt=prompt, text=f"good answer {index}")
    bad = CompletionFactory(prompt=prompt, text=f"bad answer {index}")
    good_first = rng.random() < 0.5
    first, second = (good, bad) if good_first else (bad, good)
    if factory is GoldComparisonFactory:
        extra = {"gold_outcome": Outcome.A if good_first else Outcome.B}
    else:
        extra = {"target_judgements": campaign.target_judgements}
    factory(prompt=prompt, completion_a=first, completion_b=second, campaign=campaign, **extra)


def _campaign_with_gold():
    campaign = CampaignFactory(
        slug=SLUG, target_judgements=3, gold_rate=0.3, gold_threshold=0.75, gold_min=8, pause_flagged=False
    )
    rng = random.Random(10)
    for index in range(GOLD_ITEMS):
        _pair(campaign, index, rng, GoldComparisonFactory)
    for index in range(GOLD_ITEMS, GOLD_ITEMS + ORDINARY):
        _pair(campaign, index, rng, ComparisonFactory)
    return campaign


def _client(base_url: str, user) -> httpx.Client:
    key = services.api_token_create(user=user).key
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _judge_one(client: httpx.Client, pick) -> None:
    card = client.get("/api/v1/comparisons/next", params={"campaign": SLUG})
    assert card.status_code == 200, card.text
    body = card.json()
    choice = pick(body)
    vote = {"comparison": body["id"], "left": body["left"]["id"], "right": body["right"]["id"], "choice": choice}
    response = client.post("/api/v1/judgements", json=vote)
    assert response.status_code == 201, response.text


def _steady(card) -> str:
    return "left" if card["left"]["text"].startswith("good") else "right"


def _annotate(base_url: str) -> dict[str, object]:
    people = {name: UserFactory(username=name) for name in ("steady1", "steady2", "random")}
    rng = random.Random(20261203)
    picks = {"steady1": _steady, "steady2": _steady, "random": lambda card: rng.choice(["left", "right"])}
    clients = {name: _client(base_url, user) for name, user in people.items()}
    for _ in range(JUDGEMENTS_EACH):
        for name, client in clients.items():
            _judge_one(client, picks[name])
    return people


def _stats(base_url: str) -> dict[str, dict]:
    with _client(base_url, StaffFactory()) as staff:
        response = staff.get(f"/api/v1/campaigns/{SLUG}/stats")
    assert response.status_code == 200, response.text
    stats = response.json()
    stats["by_name"] = {row["username"]: row for row in stats["annotators"]}
    return stats


def test_scripted_annotators_flag_the_random_one_and_keep_it_out_of_training(live_server, tmp_path: Path):
    campaign = _campaign_with_gold()
    people = _annotate(live_server.url)
    assert Judgement.objects.filter(annotator__in=people.values()).count() == 3 * JUDGEMENTS_EACH
    stats = _stats(live_server.url)
    by_name = stats["by_name"]

    flagged = set(
        AnnotatorFlag.objects.filter(campaign=campaign, cleared_at__isnull=True).values_list(
            "annotator__username", flat=True
        )
    )
    assert flagged == {"random"}
    assert [by_name[name]["flagged"] for name in ("steady1", "steady2", "random")] == [False, False, True]
    assert by_name["random"]["gold_seen"] >= campaign.gold_min
    assert 0.2 <= by_name["random"]["gold_accuracy"] <= 0.8
    assert by_name["steady1"]["gold_accuracy"] == by_name["steady2"]["gold_accuracy"] == 1.0

    without_random = replace(EVERY_JUDGEMENT, campaign=SLUG, exclude_annotators=("random",))
    alpha_without = selectors.annotator_reliability(judgement_filter=without_random).alpha.nominal
    assert alpha_without == pytest.approx(1.0)
    assert stats["alpha"]["nominal"] < alpha_without - 0.3

    random_votes = set(Judgement.objects.filter(annotator=people["random"]).values_list("id", flat=True))
    trusted = services.export_preferences(
        path=tmp_path / "trusted.jsonl", fmt="jsonl", judgement_filter=replace(TRUSTED_JUDGEMENTS, campaign=SLUG)
    )
    assert trusted.judgement_ids
    assert not random_votes & set(trusted.judgement_ids)
    everyone = services.export_preferences(
        path=tmp_path / "everyone.jsonl", fmt="jsonl", judgement_filter=replace(EVERY_JUDGEMENT, campaign=SLUG)
    )
    assert random_votes & set(everyone.judgement_ids)
