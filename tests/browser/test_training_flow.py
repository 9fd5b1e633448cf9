"""The loop in a browser: staff start a DPO run, a real worker trains it while the page watches, the new
version generates a round, and an annotator gets one of its comparisons."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from annotate.models import Comparison
from tests.annotate.factories import StaffFactory, UserFactory
from tests.browser.test_annotate_flow import CSP_WATCH
from tests.training.factories import judged_preferences
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Every status the live partial shows, in order, recorded by the page itself: a reload would lose it.
STATUS_WATCH = """
window.__statuses = [];
document.addEventListener("htmx:afterSettle", () => {
  const live = document.querySelector(".live");
  if (live) window.__statuses.push(live.dataset.status);
});
"""
PASSWORD = "correct-horse-battery"
SCREENSHOTS = os.environ.get("DUET_SCREENSHOTS")


def _shot(page: Page, name: str) -> None:
    """Screenshots, wide and phone-sized, for people checking the look (DUET_SCREENSHOTS=folder)."""
    if not SCREENSHOTS:
        return
    size = page.viewport_size
    page.screenshot(path=str(Path(SCREENSHOTS) / f"training-{name}.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    height = page.evaluate("document.documentElement.scrollHeight")
    for part, top in enumerate(range(0, height, 1400), start=1):
        clip = {"x": 0, "y": top, "width": 390, "height": min(1400, height - top)}
        page.screenshot(path=str(Path(SCREENSHOTS) / f"training-{name}-phone-{part}.png"), full_page=True, clip=clip)
    if size:
        page.set_viewport_size(size)


def _log_in(page: Page, base: str, username: str, next_url: str) -> None:
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}{next_url}")


def test_staff_train_watch_generate_and_an_annotator_judges_the_new_model(
    live_server,  # type: ignore[no-untyped-def]
    browser: Browser,
    page: Page,
    private_queues: str,
    tiny_version: ModelVersion,
    worker,  # type: ignore[no-untyped-def]
    wait_for: Callable[..., None],
) -> None:
    StaffFactory(username="sam")
    UserFactory(username="ann")
    judged_preferences(6)
    worker.start()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.add_init_script(CSP_WATCH)
    page.add_init_script(STATUS_WATCH)
    base = live_server.url

    _log_in(page, base, "sam", "/training/runs/new/")
    page.select_option("#id_base_version", label="tiny")
    page.select_option("#id_optimizer", "adamw")
    for name, value in {
        # Strong enough that the new version's samples differ from its parent's (same seed): identical
        # answers make no comparison.
        "lr": "0.01",
        "warmup_steps": "0",
        "batch_size": "2",
        "grad_accum": "1",
        "epochs": "2",
        "max_length": "128",
        "max_prompt_length": "64",
    }.items():
        page.fill(f"#id_{name}", value)
    _shot(page, "start-form")
    page.click("button:has-text('Start training')")
    page.wait_for_url(f"{base}/training/runs/*/")
    run = TrainingRun.objects.get()
    assert run.hyperparameters["optimizer"] == "adamw"
    page.evaluate("window.__marker = 'same page'")
    assert page.locator("#run-live").get_attribute("data-status") in (RunStatus.QUEUED, RunStatus.RUNNING)

    page.wait_for_selector('#run-live[data-status="succeeded"]', timeout=90_000)
    assert page.evaluate("window.__marker") == "same page", "the run page reloaded"
    assert page.evaluate("window.__statuses")[-1] == RunStatus.SUCCEEDED, "htmx swapped in the finished run"
    assert page.locator('[data-testid="progress"]').get_attribute("value") == "100.0"
    assert page.locator('[data-testid="percent"]').inner_text() == "100%"
    produced = ModelVersion.objects.get(trained_by=run)
    link = page.locator('[data-testid="produced-version"] a')
    assert link.inner_text() == produced.name
    assert page.locator('[data-chart="loss"] svg path').count() == 1
    _shot(page, "run-done")

    link.click()
    page.wait_for_url(f"{base}/training/models/{produced.pk}/")
    assert page.locator("#id_pairing_0").is_checked(), "a trained version pairs against its parent by default"
    page.fill("#id_n", "1")
    page.fill("#id_max_new_tokens", "8")
    page.fill("#id_temperature", "1.0")
    page.fill("#id_max_prompts", "3")
    _shot(page, "version")
    page.click("button:has-text('Generate')")
    page.wait_for_url(f"{base}/training/generations/*/")
    page.evaluate("window.__marker = 'same page'")
    page.wait_for_selector('#generation-live[data-status="succeeded"]', timeout=60_000)
    assert page.evaluate("window.__marker") == "same page", "the generation page reloaded"
    generation = GenerationRun.objects.get()
    assert generation.status == RunStatus.SUCCEEDED, generation.traceback
    made = Comparison.objects.filter(source=f"generation-{generation.pk}").count()
    assert made >= 1
    assert page.locator('[data-testid="comparisons-created"]').inner_text() == str(made)
    _shot(page, "generation-done")

    assert page.evaluate("window.__cspViolations") == []

    annotator = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        other = annotator.new_page()
        other.set_default_timeout(20_000)
        _log_in(other, base, "ann", "/annotate/")
        comparison = Comparison.objects.get(id=int(other.locator("article.card").get_attribute("data-comparison") or 0))
        assert comparison.source == f"generation-{generation.pk}"
        models = {comparison.completion_a.model_name, comparison.completion_b.model_name}
        assert models == {produced.name, tiny_version.name}
        _shot(other, "annotate-new-round")
        other.keyboard.press("1")
        other.keyboard.press("Enter")
        other.wait_for_selector(".flash-success")
    finally:
        annotator.close()

    page.goto(f"{base}/training/leaderboard/")
    assert page.locator('[data-testid="board-judgements"]').inner_text() == "1", "the judgement reached the board"
    for url, name in (("/training/", "runs"), ("/training/models/", "versions"), ("/training/leaderboard/", "board")):
        if SCREENSHOTS:
            page.goto(f"{base}{url}")
            _shot(page, name)
    assert errors == [], "JavaScript errors or CSP violations (Chromium logs both to the console)"
