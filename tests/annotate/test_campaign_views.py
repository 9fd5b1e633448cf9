"""The staff's campaign pages: list, new, edit (with a guidelines preview), status; staff only."""

import pytest
from django.test import Client

from annotate.models import AuditAction, AuditEntry, Campaign
from tests.annotate.factories import CampaignFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

FORM = {
    "slug": "helpful",
    "name": "Helpfulness",
    "question": "Which answer helps more?",
    "guidelines": "Prefer **sourced** answers.",
    "target_judgements": "3",
    "access": "everyone",
    "gold_rate": "0.1",
    "gold_threshold": "0.7",
    "gold_min": "5",
    "rushed_seconds": "2",
}


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


@pytest.mark.parametrize(
    "url",
    ["/annotate/campaigns/manage/", "/annotate/campaigns/manage/new/", "/annotate/campaigns/manage/default/edit/"],
)
def test_pages_are_403_for_annotators(client, url):
    client.force_login(UserFactory())
    assert client.get(url).status_code == 403


def test_pages_send_anonymous_visitors_to_sign_in():
    response = Client().get("/annotate/campaigns/manage/")
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_status_change_is_403_for_annotators(client):
    campaign = CampaignFactory(slug="helpful")
    client.force_login(UserFactory())
    assert client.post("/annotate/campaigns/manage/helpful/status/", {"status": "closed"}).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == "active"


def test_the_list_shows_every_campaign_with_its_status(staff_client):
    CampaignFactory(slug="helpful", access="users")
    html = staff_client.get("/annotate/campaigns/manage/").content.decode()
    assert 'data-testid="campaign-helpful"' in html


def test_creating_a_campaign_redirects_to_the_list(staff_client):
    response = staff_client.post("/annotate/campaigns/manage/new/", FORM)
    assert response.status_code == 302
    campaign = Campaign.objects.get(slug="helpful")
    assert (campaign.question, campaign.target_judgements, campaign.rushed_seconds) == (FORM["question"], 3, 2)


def test_a_refused_value_shows_on_the_form_by_its_field(staff_client):
    response = staff_client.post("/annotate/campaigns/manage/new/", FORM | {"gold_rate": "1.5"})
    assert response.status_code == 400
    assert "gold_rate" in response.context["form"].errors
    assert not Campaign.objects.filter(slug="helpful").exists()


def test_preview_renders_the_posted_guidelines_safely_and_saves_nothing(staff_client):
    posted = FORM | {"guidelines": "**bold** <script>alert(1)</script>", "preview": ""}
    response = staff_client.post("/annotate/campaigns/manage/new/", posted)
    html = response.content.decode()
    preview = html[html.index('data-testid="guidelines-preview"') :]
    assert "<strong>bold</strong>" in preview
    assert "<script>" not in preview
    assert not Campaign.objects.filter(slug="helpful").exists()


def test_editing_saves_the_changes_and_audits_them(staff_client):
    CampaignFactory(slug="helpful")
    response = staff_client.post("/annotate/campaigns/manage/helpful/edit/", FORM | {"name": "Renamed"})
    assert response.status_code == 302
    assert Campaign.objects.get(slug="helpful").name == "Renamed"
    assert AuditEntry.objects.filter(action=AuditAction.CAMPAIGN_UPDATE).exists()


def test_the_edit_page_shows_the_saved_guidelines_rendered(staff_client):
    CampaignFactory(slug="helpful", guidelines="# Rules")
    html = staff_client.get("/annotate/campaigns/manage/helpful/edit/").content.decode()
    assert "<h1>Rules</h1>" in html[html.index('data-testid="guidelines-preview"') :]


def test_status_change_pauses_a_campaign(staff_client):
    campaign = CampaignFactory(slug="helpful")
    response = staff_client.post("/annotate/campaigns/manage/helpful/status/", {"status": "paused"})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "paused"


def test_editing_an_unknown_campaign_is_404(staff_client):
    assert staff_client.get("/annotate/campaigns/manage/nope/edit/").status_code == 404
