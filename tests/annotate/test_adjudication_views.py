"""The staff's adjudication pages: the list of split votes and the decision posted from it."""

import pytest

from annotate import services
from annotate.models import Comparison
from tests.annotate.factories import ComparisonFactory, CompletionFactory, PromptFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

LIST = "/annotate/adjudicate/"


def _split(comparison=None):
    comparison = comparison or ComparisonFactory(target_judgements=2)
    for choice in ("left", "right"):
        services.judgement_record_scripted(
            annotator=UserFactory(),
            comparison_id=comparison.id,
            left_id=comparison.completion_a_id,
            right_id=comparison.completion_b_id,
            choice=choice,
        )
    return comparison


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def test_the_list_shows_each_split_comparison_with_its_votes(staff_client):
    comparison = _split()
    response = staff_client.get(LIST)
    assert response.status_code == 200
    assert [case.comparison.id for case in response.context["cases"]] == [comparison.id]
    assert f'data-comparison="{comparison.id}"' in response.content.decode()


@pytest.mark.parametrize("method", ["get", "post"])
def test_annotators_are_refused(client, method):
    comparison = _split()
    client.force_login(UserFactory())
    url = LIST if method == "get" else f"{LIST}{comparison.id}/"
    response = getattr(client, method)(url, {"outcome": "a"} if method == "post" else {})
    assert response.status_code in (302, 403)
    comparison.refresh_from_db()
    assert comparison.adjudicated_outcome == ""


def test_a_decision_is_recorded_and_shown_on_the_list(staff_client):
    comparison = _split()
    response = staff_client.post(f"{LIST}{comparison.id}/", {"outcome": "b", "note": "B is right", "page": "1"})
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}?page=1#comparison-{comparison.id}"
    comparison.refresh_from_db()
    assert (comparison.adjudicated_outcome, comparison.adjudication_note) == ("b", "B is right")
    assert "Decided: Completion B" in staff_client.get(LIST).content.decode()


def test_a_decision_without_an_outcome_changes_nothing(staff_client):
    comparison = _split()
    staff_client.post(f"{LIST}{comparison.id}/", {"outcome": "left"})
    comparison.refresh_from_db()
    assert comparison.adjudicated_outcome == ""


def test_a_decision_on_an_unknown_comparison_is_404(staff_client):
    assert staff_client.post(f"{LIST}999999/", {"outcome": "a"}).status_code == 404


def test_model_text_is_shown_as_text_not_run(staff_client):
    prompt = PromptFactory()
    hostile = CompletionFactory(prompt=prompt, text="<script>alert('x')</script> **bold**")
    _split(ComparisonFactory(prompt=prompt, completion_a=hostile, target_judgements=2))
    page = staff_client.get(LIST).content.decode()
    assert "<script>alert" not in page
    assert "<strong>bold</strong>" in page


def test_a_comparison_decided_from_the_page_stays_listed(staff_client):
    comparison = _split()
    staff_client.post(f"{LIST}{comparison.id}/", {"outcome": "tie"})
    assert Comparison.objects.get(pk=comparison.id).adjudicated_outcome == "tie"
    assert [case.comparison.id for case in staff_client.get(LIST).context["cases"]] == [comparison.id]


def test_a_decision_marked_gold_makes_the_outcome_the_gold_answer(staff_client):
    comparison = _split()
    staff_client.post(f"{LIST}{comparison.id}/", {"outcome": "b", "gold": "1"})
    comparison.refresh_from_db()
    assert (comparison.adjudicated_outcome, comparison.gold_outcome) == ("b", "b")


def test_a_gold_item_is_not_listed_as_split(staff_client):
    comparison = _split()
    Comparison.objects.filter(pk=comparison.pk).update(gold_outcome="a")
    assert staff_client.get(LIST).context["cases"] == []
