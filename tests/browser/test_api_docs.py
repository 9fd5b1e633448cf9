"""The API's Swagger UI draws itself from local assets under the Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.browser.test_annotate_flow import CSP_WATCH

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_docs_render_with_no_policy_violation_and_no_outside_request(live_server, page: Page):
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(live_server.url) else outside.append(r.url))
    page.add_init_script(CSP_WATCH)
    page.goto(f"{live_server.url}/api/v1/docs")
    page.locator(".swagger-ui .info .title").filter(has_text="Duet").wait_for()
    # Opening an operation, trying it out and unfolding the schemas draws the icons too.
    page.locator(".opblock-summary").first.click()
    page.locator(".try-out__btn").first.click()
    page.locator("section.models").first.click()
    page.wait_for_timeout(1000)
    assert page.evaluate("window.__cspViolations") == []
    assert [u for u in outside if not u.startswith("data:")] == []
