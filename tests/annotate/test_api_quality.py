"""POST /api/v1/campaigns/{slug}/annotators/{username}/unflag, and the quality options of export and runs."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate import services
from annotate.models import AnnotatorFlag, AuditAction, AuditEntry, Comparison
from tests.annotate.factories import CampaignFactory, ComparisonFactory, StaffFactory, UserFactory
from tests.annotate.services._helpers import judge
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


def _auth(user):
    return {"HTTP_AUTHORIZATION": f"Bearer {services.api_token_create(user=user).key}"}


@pytest.fixture
def flag():
    return AnnotatorFlag.objects.create(
        campaign=CampaignFactory(slug="helpful"),
        annotator=UserFactory(username="clicker"),
        reason="low gold accuracy",
        gold_seen=5,
        gold_correct=1,
    )


def _unflag(client, user, slug="helpful", username="clicker", **payload):
    url = f"/api/v1/campaigns/{slug}/annotators/{username}/unflag"
    return client.post(url, json.dumps(payload), content_type="application/json", **_auth(user))


def test_staff_unflag_clears_the_flag_with_an_audit_line_naming_them(client, flag):
    staff = StaffFactory()
    response = _unflag(client, staff, note="retrained")
    assert response.status_code == 200
    assert (response.json()["cleared_by"], response.json()["username"]) == (staff.username, "clicker")
    line = AuditEntry.objects.get(action=AuditAction.UNFLAG)
    assert (line.actor, line.detail["note"]) == (staff, "retrained")


def test_an_annotator_gets_403_and_the_flag_stays(client, flag):
    assert _unflag(client, UserFactory()).status_code == 403
    flag.refresh_from_db()
    assert flag.cleared_at is None


def test_without_a_token_it_is_401(client, flag):
    assert client.post("/api/v1/campaigns/helpful/annotators/clicker/unflag").status_code == 401


@pytest.mark.parametrize(("slug", "username"), [("nowhere", "clicker"), ("helpful", "nobody")])
def test_an_unknown_campaign_or_annotator_is_404(client, flag, slug, username):
    assert _unflag(client, StaffFactory(), slug=slug, username=username).status_code == 404


def test_an_annotator_without_an_open_flag_is_404(client, flag):
    staff = StaffFactory()
    assert _unflag(client, staff).status_code == 200
    assert _unflag(client, staff).status_code == 404


def test_the_export_api_keeps_one_campaign_and_refuses_an_unknown_one(client):
    judge(UserFactory(), ComparisonFactory(campaign=CampaignFactory(slug="helpful")))
    judge(UserFactory(), ComparisonFactory(campaign=CampaignFactory(slug="harmless")))
    staff = _auth(StaffFactory())
    response = client.get("/api/v1/export?format=jsonl&campaign=harmless", **staff)
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [row["campaign"] for row in rows] == ["harmless"]
    assert client.get("/api/v1/export?campaign=nowhere", **staff).status_code == 400


def test_the_export_api_includes_flagged_votes_on_request(client, flag):
    judge(flag.annotator, ComparisonFactory(campaign=flag.campaign))
    staff = _auth(StaffFactory())

    def rows(query):
        return b"".join(client.get(f"/api/v1/export?format=jsonl{query}", **staff).streaming_content).splitlines()

    assert (len(rows("")), len(rows("&include_flagged=true"))) == (0, 1)


@pytest.mark.usefixtures("private_queues")
def test_a_run_started_by_the_api_keeps_the_quality_options(client):
    ModelVersion.objects.create(name="plain", path="/models/plain")
    CampaignFactory(slug="helpful")
    payload = {"base_version": "plain", "campaign": "helpful", "include_flagged": True, "exclude_rushed": True}
    staff = _auth(StaffFactory())
    response = client.post("/api/v1/runs", json.dumps(payload), content_type="application/json", **staff)
    assert response.status_code == 202
    filters = TrainingRun.objects.get().dataset_filters
    assert (filters["campaign"], filters["include_flagged"], filters["exclude_rushed"]) == ("helpful", True, True)


def test_a_gold_pairs_import_through_the_api_makes_gold_items(client):
    upload = SimpleUploadedFile("gold.jsonl", b'{"prompt": "Q?", "chosen": "A", "rejected": "B", "tie": true}\n')
    response = client.post("/api/v1/import/pairs", {"file": upload, "gold": "true"}, **_auth(StaffFactory()))
    assert response.status_code == 201
    assert Comparison.objects.get().gold_outcome == "tie"
