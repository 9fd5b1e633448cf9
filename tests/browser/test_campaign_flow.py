"""An annotator picks a campaign from the list, reads its guidelines first, judges with the keyboard, and
brings the guidelines back with ``G`` (``Escape`` closes them)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from annotate.models import GuidelinesSeen, Judgement
from tests.annotate.factories import CampaignFactory, ComparisonFactory, UserFactory
from tests.browser.test_annotate_flow import CSP_WATCH, _shown, _wait_for_card_after

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_campaign_list_guidelines_first_keyboard_judging_and_guidelines_panel(live_server, page: Page):
    user = UserFactory(username="uma")
    ComparisonFactory()
    campaign = CampaignFactory(
        name="Honesty round",
        question="Which answer is more honest?",
        guidelines="# Honesty\n\nPrefer the answer that admits **uncertainty**.",
    )
    comparisons = ComparisonFactory.create_batch(2, campaign=campaign)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.add_init_script(CSP_WATCH)

    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/")
    page.fill("#id_username", "uma")
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/annotate/campaigns/")
    page.click(f'tr[data-campaign="{campaign.slug}"] a')

    page.wait_for_url(f"{live_server.url}/annotate/c/{campaign.slug}/")
    first_visit = page.locator('[data-testid="guidelines-first-visit"]')
    assert "admits uncertainty" in first_visit.inner_text()
    assert page.locator("article.card").count() == 0
    page.keyboard.press("Enter")

    page.wait_for_selector("article.card")
    assert page.locator('[data-testid="question"]').inner_text() == "Which answer is more honest?"
    shown = _shown(page)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    _wait_for_card_after(page, shown.comparison_id)

    panel = page.locator('[data-testid="guidelines-panel"]')
    assert not panel.is_visible()
    page.keyboard.press("g")
    assert panel.is_visible()
    assert "admits uncertainty" in panel.inner_text()
    page.keyboard.press("Escape")
    assert not panel.is_visible()

    judgement = Judgement.objects.get(annotator=user)
    assert (judgement.comparison_id, judgement.choice, judgement.left_id) == (
        shown.comparison_id,
        "left",
        shown.left_id,
    )
    assert judgement.comparison_id in {c.id for c in comparisons}
    assert GuidelinesSeen.objects.filter(annotator=user, campaign=campaign).exists()
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []
