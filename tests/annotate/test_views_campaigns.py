"""The annotator's campaign pages in ``annotate/views.py``: the list, the guidelines first, a campaign's cards."""

from __future__ import annotations

import pytest

from annotate.limits import DEFAULT_CAMPAIGN_SLUG
from annotate.models import AnnotatorFlag, Assignment, CampaignAccess, CampaignStatus, GuidelinesSeen, Judgement
from tests.annotate.factories import CampaignFactory, ComparisonFactory, UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
GUIDELINES = "Prefer the answer that is **true**.\n\n<script>alert(1)</script>"


@pytest.fixture
def annotator():
    return UserFactory()


@pytest.fixture
def annotator_client(client, annotator):
    client.force_login(annotator)
    return client


def _open_assignment(user) -> Assignment:
    return Assignment.objects.get(annotator=user, judged_at__isnull=True, skipped_at__isnull=True)


def test_the_campaign_list_shows_each_open_campaign_with_the_annotators_progress(annotator_client, annotator):
    campaign = CampaignFactory(name="Helpfulness")
    ComparisonFactory.create_batch(2, campaign=campaign, target_judgements=3)
    html = annotator_client.get("/annotate/campaigns/").content.decode()
    assert f'href="/annotate/c/{campaign.slug}/"' in html
    assert f'<tr data-campaign="{campaign.slug}">' in html
    assert '<td class="num" data-testid="remaining">6</td>' in html


def test_the_campaign_list_leaves_out_a_campaign_the_annotator_may_not_work_on(annotator_client):
    hidden = CampaignFactory(access=CampaignAccess.USERS)
    assert hidden.slug not in annotator_client.get("/annotate/campaigns/").content.decode()


def test_home_leads_to_the_list_when_more_than_one_campaign_is_open(annotator_client):
    CampaignFactory()
    response = annotator_client.get("/annotate/")
    assert (response.status_code, response["Location"]) == (302, "/annotate/campaigns/")


def test_home_shows_the_default_campaigns_cards_when_it_is_the_only_one(annotator_client):
    comparison = ComparisonFactory()
    html = annotator_client.get("/annotate/").content.decode()
    assert f'data-comparison="{comparison.id}"' in html


def test_first_visit_shows_the_guidelines_safely_rendered_before_any_card(annotator_client, annotator):
    campaign = CampaignFactory(guidelines=GUIDELINES)
    ComparisonFactory(campaign=campaign)
    html = annotator_client.get(f"/annotate/c/{campaign.slug}/").content.decode()
    assert 'data-testid="guidelines-first-visit"' in html
    assert "<strong>true</strong>" in html
    assert "<script>alert" not in html
    assert not Assignment.objects.exists()


def test_reading_the_guidelines_leads_to_the_first_card(annotator_client, annotator):
    campaign = CampaignFactory(guidelines=GUIDELINES)
    comparison = ComparisonFactory(campaign=campaign)
    response = annotator_client.post(f"/annotate/c/{campaign.slug}/guidelines/", follow=True)
    assert f'data-comparison="{comparison.id}"' in response.content.decode()
    assert GuidelinesSeen.objects.filter(annotator=annotator, campaign=campaign).exists()


def test_a_campaign_page_shows_its_question_and_guidelines_panel_on_the_card(annotator_client, annotator):
    campaign = CampaignFactory(guidelines=GUIDELINES, question="Which answer is more honest?")
    ComparisonFactory(campaign=campaign)
    annotator_client.post(f"/annotate/c/{campaign.slug}/guidelines/")
    html = annotator_client.get(f"/annotate/c/{campaign.slug}/").content.decode()
    assert '<h2 class="question" data-testid="question">Which answer is more honest?</h2>' in html
    assert 'id="guidelines-panel"' in html
    assert "<strong>true</strong>" in html
    assert f'<input type="hidden" name="campaign" value="{campaign.slug}">' in html


def test_a_campaign_page_serves_only_that_campaigns_cards(annotator_client, annotator):
    ComparisonFactory()
    campaign = CampaignFactory()
    mine = ComparisonFactory(campaign=campaign)
    annotator_client.get(f"/annotate/c/{campaign.slug}/")
    assert _open_assignment(annotator).comparison_id == mine.id


def test_an_unknown_campaign_is_404(annotator_client):
    assert annotator_client.get("/annotate/c/nope/").status_code == 404


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"status": CampaignStatus.PAUSED}, "is paused"),
        ({"status": CampaignStatus.CLOSED}, "is closed"),
        ({"access": CampaignAccess.USERS}, "You are not among the annotators"),
    ],
)
def test_a_refused_campaign_page_is_403_with_the_reason(annotator_client, settings_, message):
    campaign = CampaignFactory(**settings_)
    response = annotator_client.get(f"/annotate/c/{campaign.slug}/")
    assert response.status_code == 403
    assert message in response.content.decode()


def test_a_flagged_annotator_is_told_to_contact_staff(annotator_client, annotator):
    campaign = CampaignFactory(pause_flagged=True)
    AnnotatorFlag.objects.create(campaign=campaign, annotator=annotator, reason="gold", gold_seen=9, gold_correct=2)
    response = annotator_client.get(f"/annotate/c/{campaign.slug}/")
    assert (response.status_code, "Your queue is paused: contact staff." in response.content.decode()) == (403, True)


def test_judging_in_a_campaign_serves_that_campaigns_next_card(annotator_client, annotator):
    ComparisonFactory()
    campaign = CampaignFactory()
    first, second = ComparisonFactory.create_batch(2, campaign=campaign)
    annotator_client.get(f"/annotate/c/{campaign.slug}/")
    lease = _open_assignment(annotator)
    data = {"campaign": campaign.slug, "comparison_id": lease.comparison_id, "left_id": lease.left_id,
            "right_id": lease.right_id, "choice": "tie"}
    html = annotator_client.post("/annotate/judge/", data, **HTMX).content.decode()
    assert (lease.comparison_id, f'data-comparison="{second.id}"' in html) == (first.id, True)


def test_undo_on_a_campaign_page_takes_back_the_vote_in_that_campaign(annotator_client, annotator):
    other = CampaignFactory()
    ComparisonFactory(campaign=other)
    campaign = CampaignFactory()
    ComparisonFactory(campaign=campaign)
    for chosen in (campaign, other):
        annotator_client.get(f"/annotate/c/{chosen.slug}/")
        lease = _open_assignment(annotator)
        data = {"campaign": chosen.slug, "comparison_id": lease.comparison_id, "left_id": lease.left_id,
                "right_id": lease.right_id, "choice": "tie"}
        annotator_client.post("/annotate/judge/", data, **HTMX)
    annotator_client.post("/annotate/undo/", {"campaign": campaign.slug}, **HTMX)
    assert list(Judgement.objects.values_list("comparison__campaign", flat=True)) == [other.id]


def test_judging_without_htmx_returns_to_the_campaigns_page(annotator_client, annotator):
    campaign = CampaignFactory()
    ComparisonFactory(campaign=campaign)
    annotator_client.get(f"/annotate/c/{campaign.slug}/")
    lease = _open_assignment(annotator)
    data = {"campaign": campaign.slug, "comparison_id": lease.comparison_id, "left_id": lease.left_id,
            "right_id": lease.right_id, "choice": "left"}
    response = annotator_client.post("/annotate/judge/", data)
    assert response["Location"] == f"/annotate/c/{campaign.slug}/"


def test_an_htmx_action_in_a_campaign_that_became_refused_reloads_into_the_refusal(annotator_client, annotator):
    campaign = CampaignFactory()
    ComparisonFactory.create_batch(2, campaign=campaign)
    annotator_client.get(f"/annotate/c/{campaign.slug}/")
    campaign.status = CampaignStatus.PAUSED
    campaign.save()
    response = annotator_client.post("/annotate/skip/", {"campaign": campaign.slug, "comparison_id": 1}, **HTMX)
    assert response["HX-Redirect"] == f"/annotate/c/{campaign.slug}/"


def test_the_nav_links_to_the_campaigns(annotator_client):
    html = annotator_client.get("/annotate/campaigns/").content.decode()
    assert '<a href="/annotate/campaigns/" aria-current="page">Campaigns</a>' in html
    assert DEFAULT_CAMPAIGN_SLUG in html
