"""A staff member opens the adjudication page, decides a split comparison and makes it a gold item."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from annotate import services
from annotate.models import AuditAction, AuditEntry, Comparison
from tests.annotate.factories import ComparisonFactory, StaffFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _split() -> Comparison:
    comparison = ComparisonFactory(target_judgements=2)
    for choice in ("left", "right"):
        services.judgement_record_scripted(
            annotator=UserFactory(),
            comparison_id=comparison.id,
            left_id=comparison.completion_a_id,
            right_id=comparison.completion_b_id,
            choice=choice,
        )
    return comparison


def test_staff_decides_a_split_comparison_and_marks_it_gold(live_server, page: Page):
    StaffFactory(username="sam")
    comparison = _split()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/adjudicate/")
    page.fill("#id_username", "sam")
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/annotate/adjudicate/")

    case = page.locator(f'[data-comparison="{comparison.id}"]')
    assert case.locator("tbody tr").count() == 2
    case.locator("label.pill", has_text="Completion B").click()
    case.get_by_role("checkbox", name="Make it a gold item").check()
    case.locator("input[name=note]").fill("B answers the question")
    case.get_by_role("button", name="Decide").click()

    page.wait_for_selector("[role=status]")
    assert "marked gold" in page.locator("[role=status]").inner_text()
    # A gold item's answer is known: it leaves the list of splits.
    assert page.locator('[data-testid="no-splits"]').is_visible()
    comparison.refresh_from_db()
    assert (comparison.adjudicated_outcome, comparison.gold_outcome, comparison.adjudication_note) == (
        "b",
        "b",
        "B answers the question",
    )
    assert set(AuditEntry.objects.values_list("action", "actor_name")) >= {
        (AuditAction.ADJUDICATE, "sam"),
        (AuditAction.GOLD_MARK, "sam"),
    }
    assert errors == []
