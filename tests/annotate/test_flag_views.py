"""The staff's unflag action, and the open flags listed on the stats page."""

import pytest
from django.test import Client

from annotate.models import AnnotatorFlag, AuditAction, AuditEntry
from tests.annotate.factories import CampaignFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def flag():
    return AnnotatorFlag.objects.create(
        campaign=CampaignFactory(name="Helpful"),
        annotator=UserFactory(username="clicker"),
        reason="gold accuracy 1/5 = 20% (95% CI 4\u201362%) below 70% after 5 gold items",
        gold_seen=5,
        gold_correct=1,
    )


def _url(flag):
    return f"/annotate/flags/{flag.pk}/unflag/"


def test_staff_unflag_clears_the_flag_and_goes_back(client, flag):
    client.force_login(StaffFactory())
    response = client.post(_url(flag), {"next": "/annotate/stats/?sort=kappa"})
    flag.refresh_from_db()
    assert (response.status_code, response["Location"]) == (302, "/annotate/stats/?sort=kappa")
    assert flag.cleared_at is not None
    assert AuditEntry.objects.filter(action=AuditAction.UNFLAG).count() == 1


def test_an_annotator_cannot_unflag(client, flag):
    client.force_login(UserFactory())
    assert client.post(_url(flag)).status_code == 403
    flag.refresh_from_db()
    assert flag.cleared_at is None


def test_unflag_without_the_csrf_token_is_refused(flag):
    client = Client(enforce_csrf_checks=True)
    client.force_login(StaffFactory())
    assert client.post(_url(flag)).status_code == 403
    flag.refresh_from_db()
    assert flag.cleared_at is None


def test_unflag_is_post_only(client, flag):
    client.force_login(StaffFactory())
    assert client.get(_url(flag)).status_code == 405


def test_unflag_of_an_unknown_flag_is_404(client):
    client.force_login(StaffFactory())
    assert client.post("/annotate/flags/999999/unflag/").status_code == 404


def test_unflag_does_not_redirect_off_site(client, flag):
    client.force_login(StaffFactory())
    response = client.post(_url(flag), {"next": "https://evil.example/"})
    assert response["Location"] == "/annotate/stats/"


def test_unflagging_twice_says_it_was_cleared(client, flag):
    client.force_login(StaffFactory())
    client.post(_url(flag))
    response = client.post(_url(flag), follow=True)
    assert "was cleared" in response.content.decode()


def test_the_campaign_stats_page_lists_its_open_flags_with_their_reason_and_button(client, flag):
    client.force_login(StaffFactory())
    page = client.get("/annotate/stats/", {"campaign": flag.campaign.slug}).content.decode()
    assert "clicker" in page
    assert "below 70% after 5 gold items" in page
    assert f'action="{_url(flag)}"' in page
