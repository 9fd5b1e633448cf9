from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from annotate import selectors, services
from annotate.formats import MAX_ERRORS
from annotate.models import AnnotatorFlag, Assignment, Comparison, Judgement, Prompt
from tests.annotate.factories import (
    CampaignFactory,
    ComparisonFactory,
    GoldComparisonFactory,
    PromptFactory,
    StaffFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
PAGES = ["/annotate/", "/annotate/import/", "/annotate/export/", "/annotate/stats/"]
STAFF_PAGES = ["/annotate/import/", "/annotate/export/", "/annotate/stats/"]
ACTIONS = ["/annotate/judge/", "/annotate/skip/", "/annotate/undo/"]


@pytest.fixture
def annotator():
    return UserFactory()


@pytest.fixture
def annotator_client(client, annotator):
    client.force_login(annotator)
    return client


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def _open_assignment(user) -> Assignment:
    return Assignment.objects.get(annotator=user, judged_at__isnull=True, skipped_at__isnull=True)


def _judge(client, assignment: Assignment, choice: str, **extra: str):
    data = {
        "comparison_id": assignment.comparison_id,
        "left_id": assignment.left_id,
        "right_id": assignment.right_id,
        "choice": choice,
        **extra,
    }
    return client.post("/annotate/judge/", data, **HTMX)


def _pairs_file(records: list[dict], name: str = "pairs.jsonl") -> SimpleUploadedFile:
    body = "\n".join(json.dumps(r) for r in records) + "\n"
    return SimpleUploadedFile(name, body.encode(), content_type="application/jsonl")


# Access ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", PAGES)
def test_pages_send_anonymous_visitors_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", ACTIONS)
def test_actions_send_anonymous_visitors_to_login(client, url):
    comparison = ComparisonFactory()
    response = client.post(url, {"comparison_id": comparison.id, "choice": "left"}, **HTMX)
    assert response.status_code == 302
    assert Judgement.objects.count() == 0


@pytest.mark.parametrize("url", STAFF_PAGES)
def test_staff_pages_are_403_for_annotators(annotator_client, url):
    assert annotator_client.get(url).status_code == 403


def test_annotators_cannot_import(annotator_client):
    upload = _pairs_file([{"prompt": "One?", "chosen": "a", "rejected": "b"}])
    response = annotator_client.post("/annotate/import/", {"kind": "pairs", "file": upload})
    assert response.status_code == 403
    assert Prompt.objects.count() == 0


def test_annotators_cannot_export(annotator_client):
    response = annotator_client.post("/annotate/export/", {"fmt": "jsonl"})
    assert response.status_code == 403
    assert "Content-Disposition" not in response


@pytest.mark.parametrize("url", STAFF_PAGES)
def test_staff_pages_open_for_staff(staff_client, url):
    assert staff_client.get(url).status_code == 200


def test_login_form_logs_in_and_lands_on_annotate(client):
    user = UserFactory()
    response = client.post("/accounts/login/", {"username": user.username, "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert response["Location"] == "/annotate/"


def test_pages_carry_a_strict_content_security_policy(annotator_client):
    policy = annotator_client.get("/annotate/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_annotate_page_has_no_inline_script(annotator_client):
    ComparisonFactory()
    html = annotator_client.get("/annotate/").content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []


# The annotate page ----------------------------------------------------------------------


def test_page_shows_prompt_and_both_completions_in_the_assignment_order(annotator_client, annotator):
    comparison = ComparisonFactory()
    html = annotator_client.get("/annotate/").content.decode()
    assignment = _open_assignment(annotator)
    assert assignment.comparison_id == comparison.id
    assert comparison.prompt.messages[0]["content"] in html
    assert html.index(f'data-completion="{assignment.left_id}"') < html.index(
        f'data-completion="{assignment.right_id}"'
    )
    assert html.index(assignment.left.text) < html.index(assignment.right.text)


def test_page_shows_a_multi_turn_prompt_as_a_conversation(annotator_client):
    prompt = PromptFactory(
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Name a prime."},
            {"role": "assistant", "content": "Seven."},
            {"role": "user", "content": "Another one?"},
        ]
    )
    ComparisonFactory(prompt=prompt)
    html = annotator_client.get("/annotate/").content.decode()
    assert '<details class="turn turn-system">' in html
    assert html.index("Be terse.") < html.index("Name a prime.") < html.index("Seven.") < html.index("Another one?")
    assert html.count('<div class="role">User</div>') == 2
    assert html.count('<div class="role">Assistant</div>') == 1


def test_page_renders_completion_markdown_and_escapes_its_html(annotator_client):
    comparison = ComparisonFactory()
    for completion in (comparison.completion_a, comparison.completion_b):
        completion.text = "**bold** <script>alert(1)</script>\n\n```js\n<img src=x onerror=alert(1)>\n```"
        completion.save()
    html = annotator_client.get("/annotate/").content.decode()
    assert "<strong>bold</strong>" in html
    assert "<script>alert(1)" not in html
    assert "<img" not in html
    assert '<code class="language-js">&lt;img src=x onerror=alert(1)&gt;' in html


def test_page_shows_the_progress_line(annotator_client, annotator):
    ComparisonFactory.create_batch(3)
    annotator_client.get("/annotate/")
    _judge(annotator_client, _open_assignment(annotator), "left")
    html = annotator_client.get("/annotate/").content.decode()
    assert re.search(r'data-testid="judged-today">1<', html)
    assert re.search(r'data-testid="remaining">2<', html)


def test_page_shows_the_empty_state_when_nothing_is_left(annotator_client):
    html = annotator_client.get("/annotate/").content.decode()
    assert 'data-testid="empty-state"' in html
    assert "judge-form" not in html


# Judge, skip, undo ----------------------------------------------------------------------


def test_judge_records_one_judgement_with_the_sides_shown(annotator_client, annotator):
    ComparisonFactory.create_batch(2)
    annotator_client.get("/annotate/")
    assignment = _open_assignment(annotator)
    _judge(annotator_client, assignment, "right")
    judgement = Judgement.objects.get()
    assert (judgement.comparison_id, judgement.annotator_id) == (assignment.comparison_id, annotator.id)
    assert (judgement.left_id, judgement.right_id) == (assignment.left_id, assignment.right_id)
    assert judgement.choice == "right"
    assert judgement.winner_id == assignment.right_id


def test_judge_returns_the_next_card_as_a_partial(annotator_client, annotator):
    _, second = ComparisonFactory.create_batch(2)
    annotator_client.get("/annotate/")
    response = _judge(annotator_client, _open_assignment(annotator), "left")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert f'data-comparison="{second.id}"' in html
    assert "Saved: Left is better" in html


def test_judge_keeps_strength_and_reason(annotator_client, annotator):
    ComparisonFactory()
    annotator_client.get("/annotate/")
    _judge(annotator_client, _open_assignment(annotator), "left", strength="much", reason="  cites a source  ")
    judgement = Judgement.objects.get()
    assert (judgement.strength, judgement.reason) == ("much", "cites a source")


def test_judge_refuses_strength_on_a_tie_and_saves_nothing(annotator_client, annotator):
    comparison = ComparisonFactory()
    annotator_client.get("/annotate/")
    response = _judge(annotator_client, _open_assignment(annotator), "tie", strength="much")
    assert response.status_code == 422
    assert "strength only applies" in response.content.decode()
    assert f'data-comparison="{comparison.id}"' in response.content.decode()
    assert Judgement.objects.count() == 0


def test_judge_refuses_a_reason_over_1000_characters(annotator_client, annotator):
    ComparisonFactory()
    annotator_client.get("/annotate/")
    response = _judge(annotator_client, _open_assignment(annotator), "left", reason="x" * 1001)
    assert response.status_code == 422
    assert Judgement.objects.count() == 0


def test_judging_twice_is_a_409_with_a_message_and_the_next_card(annotator_client, annotator):
    _, second = ComparisonFactory.create_batch(2)
    annotator_client.get("/annotate/")
    assignment = _open_assignment(annotator)
    _judge(annotator_client, assignment, "left")
    response = _judge(annotator_client, assignment, "right")
    html = response.content.decode()
    assert response.status_code == 409
    assert "already judged" in html
    assert f'data-comparison="{second.id}"' in html
    assert Judgement.objects.get().choice == "left"


def test_judging_after_the_lease_expired_and_another_took_the_slot_is_a_409(annotator_client, annotator):
    ComparisonFactory()
    annotator_client.get("/annotate/")
    assignment = _open_assignment(annotator)
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    services.judgement_record_scripted(
        annotator=UserFactory(),
        comparison_id=assignment.comparison_id,
        left_id=assignment.left_id,
        right_id=assignment.right_id,
        choice="tie",
    )
    response = _judge(annotator_client, assignment, "left")
    assert response.status_code == 409
    assert "expired" in response.content.decode()
    assert 'data-testid="empty-state"' in response.content.decode()


def test_judging_a_comparison_leased_to_someone_else_is_a_409_that_saves_nothing(annotator_client):
    ComparisonFactory.create_batch(2)
    other = UserFactory()
    theirs = services.lease_take(annotator=other)
    data = {"comparison_id": theirs.comparison_id, "left_id": theirs.left.id, "right_id": theirs.right.id}
    response = annotator_client.post("/annotate/judge/", {**data, "choice": "left"}, **HTMX)
    assert response.status_code == 409
    assert "not the one shown to you" in response.content.decode()
    assert Judgement.objects.count() == 0


def test_judging_with_the_sides_swapped_is_a_409(annotator_client, annotator):
    ComparisonFactory()
    annotator_client.get("/annotate/")
    assignment = _open_assignment(annotator)
    assignment.left_id, assignment.right_id = assignment.right_id, assignment.left_id
    response = _judge(annotator_client, assignment, "left")
    assert response.status_code == 409
    assert "as you were shown them" in response.content.decode()
    assert Judgement.objects.count() == 0


@pytest.mark.parametrize("field", ["comparison_id", "left_id", "right_id"])
def test_an_id_beyond_64_bits_is_a_422_naming_the_field(annotator_client, annotator, field):
    ComparisonFactory()
    annotator_client.get("/annotate/")
    assignment = _open_assignment(annotator)
    data = {"comparison_id": assignment.comparison_id, "left_id": assignment.left_id, "right_id": assignment.right_id}
    response = annotator_client.post("/annotate/judge/", {**data, field: str(2**63), "choice": "left"}, **HTMX)
    assert response.status_code == 422
    assert f"{field}:" in response.content.decode()


def test_skipping_an_id_beyond_64_bits_is_a_422_naming_the_field(annotator_client):
    response = annotator_client.post("/annotate/skip/", {"comparison_id": str(2**63)}, **HTMX)
    assert response.status_code == 422
    assert "comparison_id:" in response.content.decode()


def test_a_reason_with_a_nul_is_a_422_naming_reason(annotator_client, annotator):
    ComparisonFactory()
    annotator_client.get("/annotate/")
    response = _judge(annotator_client, _open_assignment(annotator), "left", reason="a\x00b")
    assert response.status_code == 422
    assert "reason:" in response.content.decode()
    assert Judgement.objects.count() == 0


def test_judge_without_htmx_redirects_back_to_the_campaigns_page(annotator_client, annotator):
    ComparisonFactory()
    annotator_client.get("/annotate/")
    assignment = _open_assignment(annotator)
    data = {
        "comparison_id": assignment.comparison_id,
        "left_id": assignment.left_id,
        "right_id": assignment.right_id,
        "choice": "both_bad",
    }
    response = annotator_client.post("/annotate/judge/", data, follow=True)
    assert response.redirect_chain == [("/annotate/c/default/", 302)]
    assert "Saved: Both are bad" in response.content.decode()
    assert Judgement.objects.get().choice == "both_bad"


def test_skip_shows_the_next_card_and_never_the_skipped_one_again(annotator_client, annotator):
    first, second = ComparisonFactory.create_batch(2)
    annotator_client.get("/annotate/")
    response = annotator_client.post("/annotate/skip/", {"comparison_id": first.id}, **HTMX)
    assert f'data-comparison="{second.id}"' in response.content.decode()
    annotator_client.post("/annotate/skip/", {"comparison_id": second.id}, **HTMX)
    assert 'data-testid="empty-state"' in annotator_client.get("/annotate/").content.decode()
    assert Judgement.objects.count() == 0


def test_undo_removes_the_last_judgement_and_shows_it_again_as_answered(annotator_client, annotator):
    first, _ = ComparisonFactory.create_batch(2)
    annotator_client.get("/annotate/")
    _judge(annotator_client, _open_assignment(annotator), "right", strength="clearly")
    response = annotator_client.post("/annotate/undo/", **HTMX)
    html = response.content.decode()
    assert Judgement.objects.count() == 0
    assert Comparison.objects.get(id=first.id).judgement_count == 0
    assert f'data-comparison="{first.id}"' in html
    assert re.search(r'value="right"\s+checked', html)
    assert re.search(r'value="clearly"\s*checked', html)


def test_undo_of_a_judgement_a_finished_run_trained_on_is_a_409_that_keeps_it(annotator_client, annotator):
    ComparisonFactory()
    annotator_client.get("/annotate/")
    _judge(annotator_client, _open_assignment(annotator), "left")
    services.judgements_mark_trained(judgement_ids=Judgement.objects.values_list("id", flat=True))
    response = annotator_client.post("/annotate/undo/", **HTMX)
    assert response.status_code == 409
    assert "training run" in response.content.decode()
    assert Judgement.objects.count() == 1


def test_undo_with_nothing_to_undo_says_so(annotator_client):
    response = annotator_client.post("/annotate/undo/", **HTMX)
    assert response.status_code == 200
    assert "Nothing to undo." in response.content.decode()


def test_actions_refuse_get(annotator_client):
    assert annotator_client.get("/annotate/judge/").status_code == 405


# CSRF -----------------------------------------------------------------------------------


def test_judge_without_a_csrf_token_is_refused(annotator):
    ComparisonFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    client.get("/annotate/")
    response = _judge(client, _open_assignment(annotator), "left")
    assert response.status_code == 403
    assert Judgement.objects.count() == 0


def test_judge_with_the_page_csrf_header_is_accepted(annotator):
    ComparisonFactory()
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator)
    html = client.get("/annotate/").content.decode()
    match = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', html)
    assert match is not None
    token = match.group(1)
    assignment = _open_assignment(annotator)
    data = {
        "comparison_id": assignment.comparison_id,
        "left_id": assignment.left_id,
        "right_id": assignment.right_id,
        "choice": "left",
    }
    response = client.post("/annotate/judge/", data, headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert response.status_code == 200
    assert Judgement.objects.count() == 1


# Import ---------------------------------------------------------------------------------

PAIRS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"},
]


def test_import_pairs_creates_comparisons_and_shows_the_summary(staff_client):
    response = staff_client.post(
        "/annotate/import/", {"kind": "pairs", "file": _pairs_file(PAIRS), "target_judgements": 3}
    )
    assert response.status_code == 200
    assert "2 records: 2 new prompts, 2 new comparisons, 0 new judgements" in response.content.decode()
    assert list(Comparison.objects.values_list("target_judgements", flat=True)) == [3, 3]


def test_import_pairs_into_a_campaign_chosen_on_the_form(staff_client):
    campaign = CampaignFactory(slug="helpful", target_judgements=4)
    staff_client.post("/annotate/import/", {"kind": "pairs", "file": _pairs_file(PAIRS), "campaign": "helpful"})
    assert set(Comparison.objects.values_list("campaign_id", "target_judgements")) == {(campaign.pk, 4)}


def test_import_pairs_as_judged_records_the_file_choice(staff_client):
    staff_client.post("/annotate/import/", {"kind": "pairs", "file": _pairs_file(PAIRS), "judged": "on"})
    assert Judgement.objects.filter(annotator=None, source="pairs.jsonl", choice="left").count() == 2


def test_import_prompts_creates_prompts(staff_client):
    upload = _pairs_file([{"prompt": "One?"}, {"prompt": "Two?"}], name="prompts.jsonl")
    response = staff_client.post("/annotate/import/", {"kind": "prompts", "file": upload})
    assert response.status_code == 200
    assert Prompt.objects.count() == 2
    assert Comparison.objects.count() == 0


def test_import_error_names_line_and_field_and_writes_nothing(staff_client):
    broken = [*PAIRS, {"prompt": "Fine?", "chosen": "yes"}]
    response = staff_client.post("/annotate/import/", {"kind": "pairs", "file": _pairs_file(broken)})
    assert response.status_code == 400
    assert "pairs.jsonl line 3, field &#x27;rejected&#x27;: is missing" in response.content.decode()
    assert Prompt.objects.count() == 0
    assert Comparison.objects.count() == 0


def test_import_of_a_file_with_more_faults_than_shown_says_reading_stopped(staff_client):
    broken = [{"prompt": i} for i in range(MAX_ERRORS + 1)]
    response = staff_client.post("/annotate/import/", {"kind": "prompts", "file": _pairs_file(broken)})
    page = response.content.decode()
    assert f"has more than {MAX_ERRORS} problems; reading stopped after these" in page
    assert page.count("expected a string or a non-empty list") == MAX_ERRORS


def test_import_refuses_judged_prompts(staff_client):
    upload = _pairs_file([{"prompt": "One?"}], name="prompts.jsonl")
    response = staff_client.post("/annotate/import/", {"kind": "prompts", "file": upload, "judged": "on"})
    assert response.status_code == 400
    assert "Only a pairs file can carry judgements." in response.content.decode()
    assert Prompt.objects.count() == 0


# Export ---------------------------------------------------------------------------------


@pytest.fixture
def judged_pair(staff_client):
    """One comparison judged by one annotator: 'Paris' beats 'Lyon'."""
    staff_client.post("/annotate/import/", {"kind": "pairs", "file": _pairs_file(PAIRS[1:])})
    comparison = Comparison.objects.get()
    paris = next(c for c in (comparison.completion_a, comparison.completion_b) if c.text == "Paris")
    lyon = comparison.completion_b if paris == comparison.completion_a else comparison.completion_a
    services.judgement_record_scripted(
        annotator=UserFactory(username="ann"), comparison_id=comparison.id, left_id=lyon.id, right_id=paris.id,
        choice="right",
    )  # fmt: skip
    return comparison


def _download(response) -> bytes:
    return b"".join(response.streaming_content)


def test_export_jsonl_downloads_the_preference_rows(staff_client, judged_pair):
    response = staff_client.post("/annotate/export/", {"fmt": "jsonl", "min_agreement": "0"})
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="preferences-standard-')
    rows = [json.loads(line) for line in _download(response).decode().splitlines()]
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [("Capital of France?", "Paris", "Lyon")]


def test_export_conversational_parquet_keeps_messages(staff_client, judged_pair):
    response = staff_client.post("/annotate/export/", {"fmt": "parquet", "conversational": "on"})
    table = pq.read_table(io.BytesIO(_download(response)))
    assert table.column("chosen").to_pylist() == [[{"role": "assistant", "content": "Paris"}]]


def test_export_hf_downloads_a_zipped_dataset_folder(staff_client, judged_pair):
    response = staff_client.post("/annotate/export/", {"fmt": "hf"})
    assert response["Content-Disposition"].endswith('.zip"')
    names = zipfile.ZipFile(io.BytesIO(_download(response))).namelist()
    assert "dataset_info.json" in names
    assert any(name.endswith(".arrow") for name in names)


def test_export_leaves_out_excluded_annotators(staff_client, judged_pair):
    response = staff_client.post("/annotate/export/", {"fmt": "jsonl", "exclude_annotators": "someone, ann"})
    assert _download(response) == b""


def test_export_refuses_an_agreement_above_one(staff_client, judged_pair):
    response = staff_client.post("/annotate/export/", {"fmt": "jsonl", "min_agreement": "1.5"})
    assert response.status_code == 400
    assert "less than or equal to 1" in response.content.decode()


# Stats ----------------------------------------------------------------------------------


def test_stats_shows_counts_and_pairwise_agreement(staff_client):
    comparison = ComparisonFactory(target_judgements=3)
    a, b = comparison.completion_a_id, comparison.completion_b_id
    for name, choice in (("amy", "left"), ("bob", "left"), ("cat", "right")):
        services.judgement_record_scripted(
            annotator=UserFactory(username=name), comparison_id=comparison.id, left_id=a, right_id=b, choice=choice
        )
    html = staff_client.get("/annotate/stats/").content.decode()
    assert re.search(r'data-testid="stat-judgements">3<', html)
    assert re.search(r'data-testid="stat-agreement">33%<', html)
    assert re.search(
        r"<td>amy</td>\s*<td class=\"num\">1</td>\s*<td class=\"num\">1</td>\s*<td class=\"num\">50%", html
    )


def _judged_by_three():
    """Six comparisons judged by amy, bob and cat: amy and bob agree on all, cat on half; all pick left."""
    for i in range(6):
        comparison = ComparisonFactory(target_judgements=3)
        a, b = comparison.completion_a_id, comparison.completion_b_id
        for name, choice in (("amy", "left"), ("bob", "left"), ("cat", "left" if i % 2 else "right")):
            left, right = (a, b) if choice == "left" else (b, a)
            services.judgement_record_scripted(
                annotator=UserFactory(username=name), comparison_id=comparison.id, left_id=left, right_id=right,
                choice="left",
            )


def test_stats_shows_nominal_alpha_with_its_interval(staff_client):
    _judged_by_three()
    alpha = selectors.annotator_reliability().alpha
    html = staff_client.get("/annotate/stats/").content.decode()
    assert f'data-testid="alpha-nominal">{alpha.nominal:.2f}<' in html
    low, high = alpha.nominal_interval
    assert f'data-testid="alpha-nominal-interval">[{low:.2f}, {high:.2f}]<' in html


def test_stats_shows_an_annotators_kappa_and_left_share(staff_client):
    _judged_by_three()
    cat = next(r for r in selectors.annotator_reliability().annotators if r.username == "cat")
    html = staff_client.get("/annotate/stats/").content.decode()
    low, high = (round(100 * end) for end in cat.left_share_interval)
    assert re.search(
        rf'<td class="num">{cat.kappa:.2f}</td>\s*<td class="num"[^>]*>[^<]*</td>\s*'
        rf'<td class="num">100% \[{low}, {high}\]</td>',
        html,
    )


def test_stats_sorts_the_annotator_table_by_the_column_asked(staff_client):
    _judged_by_three()
    html = staff_client.get("/annotate/stats/?sort=agreement").content.decode()
    table = html[html.index('data-testid="reliability"') :]
    assert table.index("<td>cat</td>") < table.index("<td>amy</td>") < table.index("<td>bob</td>")


def test_stats_csv_has_a_header_and_one_row_per_annotator(staff_client):
    _judged_by_three()
    response = staff_client.get("/annotate/stats/?format=csv&sort=username")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == selectors.CAMPAIGN_CSV_HEADER
    assert [row[0] for row in rows[1:]] == ["amy", "bob", "cat"]


def test_stats_csv_is_403_for_annotators(annotator_client):
    assert annotator_client.get("/annotate/stats/?format=csv").status_code == 403


def _campaign_judged(slug):
    """A campaign with one comparison judged alike by amy and bob, and one gold item amy got wrong."""
    campaign = CampaignFactory(slug=slug)
    comparison = ComparisonFactory(campaign=campaign, target_judgements=2)
    gold = GoldComparisonFactory(campaign=campaign)
    for name in ("amy", "bob"):
        services.judgement_record_scripted(
            annotator=UserFactory(username=name), comparison_id=comparison.id,
            left_id=comparison.completion_a_id, right_id=comparison.completion_b_id, choice="left",
        )
    services.judgement_record_scripted(
        annotator=UserFactory(username="amy"), comparison_id=gold.id,
        left_id=gold.completion_a_id, right_id=gold.completion_b_id, choice="right",
    )
    return campaign


def test_stats_of_a_campaign_shows_only_its_annotators_with_gold_accuracy(staff_client):
    _campaign_judged("helpful")
    services.judgement_record_scripted(
        annotator=UserFactory(username="zed"), comparison_id=(other := ComparisonFactory()).id,
        left_id=other.completion_a_id, right_id=other.completion_b_id, choice="left",
    )
    html = staff_client.get("/annotate/stats/?campaign=helpful").content.decode()
    table = html[html.index('data-testid="reliability"') :]
    assert "<td>amy</td>" in table
    assert "<td>zed</td>" not in table
    assert re.search(r'data-testid="gold-amy">0% \[0, \d+\] of 1<', html)


def test_stats_of_a_campaign_marks_a_flagged_annotator(staff_client):
    campaign = _campaign_judged("helpful")
    AnnotatorFlag.objects.create(
        campaign=campaign, annotator=UserFactory(username="amy"), reason="gold", gold_seen=1, gold_correct=0
    )
    html = staff_client.get("/annotate/stats/?campaign=helpful").content.decode()
    assert 'data-testid="flagged-amy"' in html
    assert 'data-testid="flagged-bob"' not in html


def test_stats_draws_the_campaigns_throughput(staff_client):
    _campaign_judged("helpful")
    html = staff_client.get("/annotate/stats/?campaign=helpful").content.decode()
    figure = html[html.index('data-testid="throughput"') :]
    assert figure.index("<svg") < figure.index("</figure>")
    assert "3 judgements by people, per hour" in figure


def test_stats_of_an_unknown_campaign_is_404_naming_it(staff_client):
    response = staff_client.get("/annotate/stats/?campaign=nope")
    assert response.status_code == 404


def test_stats_csv_of_a_campaign_has_gold_and_flag_columns(staff_client):
    _campaign_judged("helpful")
    response = staff_client.get("/annotate/stats/?campaign=helpful&format=csv&sort=username")
    rows = [dict(zip(selectors.CAMPAIGN_CSV_HEADER, row, strict=True)) for row in csv.reader(io.StringIO(
        response.content.decode()))][1:]
    assert [(row["username"], row["gold_seen"], row["flagged"]) for row in rows] == [
        ("amy", "1", "False"),
        ("bob", "0", "False"),
    ]
    assert 'filename="annotators-helpful.csv"' in response["Content-Disposition"]
