"""Scripted annotators over HTTP on a campaign with gold items: the one clicking at random is flagged and left out.

Two consistent annotators and one who clicks at random each judge 100 cards through the API of a
real server. The random one ends up flagged (gold accuracy near 50%), the consistent ones do not;
alpha with all three is clearly below alpha without the random one; the default export leaves
the random one's votes out.
"""

from __future__ import annotations

import json
import random
import urllib.request

import pytest

from annotate import selectors, services
from annotate.filters import JudgementFilter
from annotate.models import Judgement, Outcome
from tests.annotate.factories import CampaignFactory, ComparisonFactory, GoldComparisonFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

JUDGEMENTS_EACH = 100


def _items(campaign, count):
    """``count`` ordinary comparisons and ``count`` gold items, interleaved, the good answer on either completion."""
    for n in range(count):
        good_first = n % 2 == 0
        for factory, kind in ((ComparisonFactory, "ordinary"), (GoldComparisonFactory, "gold")):
            good, bad = f"Good {kind} answer {n}", f"Bad {kind} answer {n}"
            a, b = (good, bad) if good_first else (bad, good)
            extra = {"gold_outcome": Outcome.A if good_first else Outcome.B} if kind == "gold" else {}
            factory(campaign=campaign, target_judgements=3, completion_a__text=a, completion_b__text=b, **extra)


class Client:
    def __init__(self, base_url, user):
        self.base_url = base_url
        self.token = services.api_token_create(user=user).key

    def call(self, method, path, body=None):
        request = urllib.request.Request(
            f"{self.base_url}/api/v1{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, (json.loads(response.read() or b"null"))


def _judge_all(client, slug, pick):
    for _ in range(JUDGEMENTS_EACH):
        status, card = client.call("GET", f"/comparisons/next?campaign={slug}")
        assert status == 200, "the queue ran dry before 100 judgements"
        choice = pick(card)
        status, _ = client.call(
            "POST",
            "/judgements",
            {"comparison": card["id"], "left": card["left"]["id"], "right": card["right"]["id"], "choice": choice},
        )
        assert status == 201


def test_the_random_clicker_is_flagged_and_left_out(live_server, tmp_path):
    campaign = CampaignFactory(slug="helpful", gold_rate=0.5, gold_min=10, gold_threshold=0.7)
    _items(campaign, 60)
    careful, steady, clicker = (UserFactory(username=name) for name in ("careful", "steady", "clicker"))
    coin = random.Random(20261203)

    def consistent(card):
        return "left" if card["left"]["text"].startswith("Good") else "right"

    def at_random(card):
        return coin.choice(["left", "right"])

    for user, pick in ((careful, consistent), (steady, consistent), (clicker, at_random)):
        _judge_all(Client(live_server.url, user), campaign.slug, pick)

    assert [flag.annotator.username for flag in selectors.open_flags(campaign=campaign)] == ["clicker"]
    everyone = JudgementFilter(campaign="helpful", include_flagged=True)
    with_clicker = selectors.annotator_reliability(judgement_filter=everyone).alpha.nominal
    without = selectors.annotator_reliability(
        judgement_filter=JudgementFilter(campaign="helpful", include_flagged=True, exclude_annotators=("clicker",))
    ).alpha.nominal
    assert with_clicker is not None
    assert without is not None
    assert with_clicker < without - 0.2
    exported = services.export_preferences(path=tmp_path / "out.jsonl", fmt="jsonl")
    voters = set(Judgement.objects.filter(id__in=exported.judgement_ids).values_list("annotator__username", flat=True))
    assert voters == {"careful", "steady"}
