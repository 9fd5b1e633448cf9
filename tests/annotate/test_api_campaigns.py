"""/api/v1/campaigns: the list a user may see, creating one (staff), and one campaign's stats (staff)."""

import pytest
from django.contrib.auth.models import Group

from annotate import services
from annotate.models import AnnotatorFlag, Campaign
from tests.annotate.factories import (
    CampaignFactory,
    ComparisonFactory,
    GoldComparisonFactory,
    StaffFactory,
    UserFactory,
)
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.django_db


def _auth(user):
    return {"HTTP_AUTHORIZATION": f"Bearer {services.api_token_create(user=user).key}"}


def _slugs(client, user):
    return {row["slug"] for row in client.get("/api/v1/campaigns", **_auth(user)).json()}


def test_an_annotator_sees_open_campaigns_their_own_and_their_groups_not_others(client):
    ann = UserFactory()
    group = Group.objects.create(name="raters")
    ann.groups.add(group)
    CampaignFactory(slug="open")
    CampaignFactory(slug="mine", access="users").users.add(ann)
    CampaignFactory(slug="ours", access="group", group=group)
    CampaignFactory(slug="theirs", access="users").users.add(UserFactory())
    slugs = _slugs(client, ann)
    assert {"open", "mine", "ours"} <= slugs
    assert "theirs" not in slugs


def test_staff_see_every_campaign(client):
    CampaignFactory(slug="theirs", access="users")
    assert "theirs" in _slugs(client, StaffFactory())


def test_staff_create_a_campaign(client):
    response = client.post(
        "/api/v1/campaigns",
        {"slug": "helpful", "name": "Helpfulness", "target_judgements": 4, "gold_rate": 0.2},
        content_type="application/json",
        **_auth(StaffFactory()),
    )
    assert response.status_code == 201
    assert response.json()["target_judgements"] == 4
    assert Campaign.objects.get(slug="helpful").gold_rate == 0.2


def test_create_refuses_a_taken_slug_naming_the_field(client):
    CampaignFactory(slug="helpful")
    response = client.post(
        "/api/v1/campaigns", {"slug": "helpful", "name": "Again"}, content_type="application/json",
        **_auth(StaffFactory()),
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("slug: ")


def test_create_refuses_an_unknown_user_naming_them(client):
    response = client.post(
        "/api/v1/campaigns", {"slug": "x", "name": "X", "access": "users", "users": ["ghost"]},
        content_type="application/json", **_auth(StaffFactory()),
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "users: no such user: ghost"


def test_create_is_403_for_annotators(client):
    response = client.post(
        "/api/v1/campaigns", {"slug": "x", "name": "X"}, content_type="application/json", **_auth(UserFactory())
    )
    assert response.status_code == 403
    assert not Campaign.objects.filter(slug="x").exists()


def _stats(client, slug, user=None):
    return client.get(f"/api/v1/campaigns/{slug}/stats", **_auth(user or StaffFactory()))


def test_stats_has_exactly_the_documented_keys(client):
    campaign = CampaignFactory(slug="helpful")
    comparison = ComparisonFactory(campaign=campaign, target_judgements=2)
    judge(UserFactory(username="ann"), comparison, "left")
    judge(UserFactory(username="bob"), comparison, "right")
    body = _stats(client, "helpful").json()
    assert set(body) == {"alpha", "annotators"}
    assert set(body["alpha"]) == {"nominal", "ordinal", "interval"}
    assert {frozenset(row) for row in body["annotators"]} == {
        frozenset(
            {"username", "judgements", "agreement", "kappa", "gold_accuracy", "gold_seen", "left_share",
             "median_seconds", "rushed", "flagged"}
        )
    }


def test_stats_give_gold_accuracy_and_the_flag_as_a_bool(client):
    campaign = CampaignFactory(slug="helpful")
    ann = UserFactory(username="ann")
    judge(ann, GoldComparisonFactory(campaign=campaign), "right")
    AnnotatorFlag.objects.create(campaign=campaign, annotator=ann, reason="gold", gold_seen=1, gold_correct=0)
    (row,) = _stats(client, "helpful").json()["annotators"]
    assert (row["gold_accuracy"], row["gold_seen"], row["flagged"]) == (0.0, 1, True)


def test_stats_of_an_unknown_campaign_is_404(client):
    assert _stats(client, "nope").status_code == 404


def test_stats_are_403_for_annotators(client):
    CampaignFactory(slug="helpful")
    assert _stats(client, "helpful", UserFactory()).status_code == 403
