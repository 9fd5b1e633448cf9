"""An annotator logs in, judges with the keyboard only, undoes, and the database agrees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page

from annotate import services
from annotate.models import Assignment, Comparison, Completion, Judgement
from tests.annotate.factories import ComparisonFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Records every Content-Security-Policy violation, before any of the page's own scripts run.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@dataclass(frozen=True)
class Shown:
    comparison_id: int
    left_id: int
    right_id: int


def _shown(page: Page) -> Shown:
    card = page.locator("article.card")
    return Shown(
        comparison_id=int(card.get_attribute("data-comparison") or 0),
        left_id=int(page.locator('[data-side="left"]').get_attribute("data-completion") or 0),
        right_id=int(page.locator('[data-side="right"]').get_attribute("data-completion") or 0),
    )


def _wait_for_card_after(page: Page, comparison_id: int) -> None:
    page.wait_for_function(
        "id => { const c = document.querySelector('article.card');"
        " return !document.querySelector('.htmx-request') && (!c || c.dataset.comparison !== String(id)); }",
        arg=comparison_id,
    )


def _press(page: Page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def test_keyboard_only_judging_with_undo(live_server, page: Page):
    user = UserFactory(username="kim")
    comparisons = ComparisonFactory.create_batch(4)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.add_init_script(CSP_WATCH)

    page.goto(f"{live_server.url}/annotate/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "kim")
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/annotate/")
    page.evaluate("window.__marker = 'same page'")

    first = _shown(page)
    _press(page, "1", "Enter")
    _wait_for_card_after(page, first.comparison_id)

    second = _shown(page)
    _press(page, "w", "ArrowRight", "Enter")
    _wait_for_card_after(page, second.comparison_id)

    third = _shown(page)
    _press(page, "t", "Enter")
    _wait_for_card_after(page, third.comparison_id)
    assert page.locator('[data-testid="judged-today"]').inner_text() == "3"

    _press(page, "u")
    page.wait_for_function(
        "id => document.querySelector('article.card')?.dataset.comparison === String(id)", arg=third.comparison_id
    )
    assert page.locator(".flash").inner_text().startswith("Took back your last judgement")
    assert page.locator('input[name="choice"][value="tie"]').is_checked()
    assert page.locator('[data-testid="judged-today"]').inner_text() == "2"

    assert page.evaluate("window.__marker") == "same page", "the page reloaded"
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []

    judgements = list(Judgement.objects.filter(annotator=user).order_by("id"))
    assert [(j.comparison_id, j.left_id, j.right_id, j.choice, j.strength, j.winner_id) for j in judgements] == [
        (first.comparison_id, first.left_id, first.right_id, "left", "", first.left_id),
        (second.comparison_id, second.left_id, second.right_id, "right", "clearly", second.right_id),
    ]
    assert Judgement.objects.count() == 2
    assert Comparison.objects.get(id=third.comparison_id).judgement_count == 0
    assert {first.comparison_id, second.comparison_id, third.comparison_id} <= {c.id for c in comparisons}


def test_quick_mode_saves_on_a_single_key(live_server, page: Page):
    user = UserFactory(username="lee")
    ComparisonFactory.create_batch(2)
    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/")
    page.fill("#id_username", "lee")
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/annotate/")
    page.check("#quick-mode")

    first = _shown(page)
    _press(page, "e", "1")
    _wait_for_card_after(page, first.comparison_id)

    judgement = Judgement.objects.get(annotator=user)
    assert (judgement.comparison_id, judgement.choice, judgement.strength) == (first.comparison_id, "left", "much")
    assert judgement.winner_id == first.left_id


def test_phone_width_stacks_the_completions_and_scrolls_code_inside_its_box(live_server, page: Page):
    UserFactory(username="max")
    comparison = ComparisonFactory()
    long_code = "```python\nprint('" + "x" * 400 + "')\n```"
    Completion.objects.filter(id=comparison.completion_a_id).update(text=long_code)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/")
    page.fill("#id_username", "max")
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/annotate/")
    left = page.locator('[data-side="left"]').bounding_box()
    right = page.locator('[data-side="right"]').bounding_box()
    assert left is not None
    assert right is not None
    assert right["y"] >= left["y"] + left["height"]
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    code_box = page.locator(f'[data-completion="{comparison.completion_a_id}"] pre')
    assert code_box.evaluate("el => el.scrollWidth > el.clientWidth")
    assert code_box.evaluate("el => el.getBoundingClientRect().right <= window.innerWidth")


def test_a_conflict_shows_its_message_and_the_next_card(live_server, page: Page):
    UserFactory(username="ned")
    ComparisonFactory.create_batch(2)
    page.goto(f"{live_server.url}/accounts/login/?next=/annotate/")
    page.fill("#id_username", "ned")
    page.fill("#id_password", "correct-horse-battery")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/annotate/")
    page.evaluate("window.__marker = 'same page'")
    shown = _shown(page)
    # Ned's lease runs out, and someone quicker takes its slot.
    Assignment.objects.filter(annotator__username="ned").update(expires_at=timezone.now() - timedelta(seconds=1))
    services.judgement_record_scripted(
        annotator=UserFactory(username="quicker"),
        comparison_id=shown.comparison_id,
        left_id=shown.left_id,
        right_id=shown.right_id,
        choice="tie",
    )

    _press(page, "2", "Enter")
    _wait_for_card_after(page, shown.comparison_id)

    assert "expired" in page.locator(".flash").inner_text()
    assert page.locator("article.card").count() == 1
    assert page.evaluate("window.__marker") == "same page"
    assert Judgement.objects.filter(comparison_id=shown.comparison_id).count() == 1
