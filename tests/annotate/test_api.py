import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate import services
from annotate.models import Assignment, CampaignStatus, Comparison, Judgement
from tests.annotate.factories import CampaignFactory, ComparisonFactory, StaffFactory, UserFactory
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.django_db


def _auth(user):
    return {"HTTP_AUTHORIZATION": f"Bearer {services.api_token_create(user=user).key}"}


def _next(client, user):
    return client.get("/api/v1/comparisons/next", **_auth(user))


def _post_judgement(client, user, payload):
    return client.post("/api/v1/judgements", json.dumps(payload), content_type="application/json", **_auth(user))


def test_next_without_a_token_is_401(client):
    assert client.get("/api/v1/comparisons/next").status_code == 401


def test_next_with_a_wrong_token_is_401(client):
    response = client.get("/api/v1/comparisons/next", HTTP_AUTHORIZATION="Bearer nope")
    assert response.status_code == 401


def test_next_returns_prompt_and_both_sides(client):
    comparison = ComparisonFactory()
    body = _next(client, UserFactory()).json()
    assert body["id"] == comparison.id
    assert body["prompt"] == comparison.prompt.messages
    assert {body["left"]["id"], body["right"]["id"]} == {comparison.completion_a_id, comparison.completion_b_id}


def test_next_is_204_when_nothing_is_left(client):
    assert _next(client, UserFactory()).status_code == 204


def test_judgement_is_201_and_recorded(client):
    ComparisonFactory()
    user = UserFactory()
    shown = _next(client, user).json()
    payload = {"comparison": shown["id"], "left": shown["left"]["id"], "right": shown["right"]["id"], "choice": "right"}
    response = _post_judgement(client, user, {**payload, "strength": "much", "reason": "clearer"})
    assert response.status_code == 201
    assert response.json()["winner"] == shown["right"]["id"]
    assert Judgement.objects.get().reason == "clearer"


def _shown_payload(shown, choice="left"):
    return {"comparison": shown["id"], "left": shown["left"]["id"], "right": shown["right"]["id"], "choice": choice}


def _undo(client, user):
    return client.post("/api/v1/judgements/undo", **_auth(user))


def test_second_judgement_is_409(client):
    ComparisonFactory(target_judgements=2)
    user = UserFactory()
    payload = _shown_payload(_next(client, user).json())
    _post_judgement(client, user, payload)
    response = _post_judgement(client, user, payload)
    assert response.status_code == 409
    assert "already judged" in response.json()["detail"]


def test_unknown_choice_is_a_clear_400_or_422(client):
    ComparisonFactory()
    user = UserFactory()
    response = _post_judgement(client, user, _shown_payload(_next(client, user).json(), choice="meh"))
    assert response.status_code == 400
    assert "choice" in json.dumps(response.json())


def test_a_judgement_on_a_comparison_leased_to_someone_else_is_409_and_theirs_is_201(client):
    ComparisonFactory()
    alice, bob = UserFactory(), UserFactory()
    bobs = _shown_payload(_next(client, bob).json())
    response = _post_judgement(client, alice, bobs)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        f"comparison {bobs['comparison']} is not the one shown to you; ask for the next one",
    )
    assert _post_judgement(client, bob, bobs).status_code == 201


def test_a_judgement_on_a_comparison_never_shown_is_409_and_takes_nothing(client):
    comparison = ComparisonFactory()
    payload = {"comparison": comparison.id, "left": comparison.completion_a_id, "right": comparison.completion_b_id}
    response = _post_judgement(client, UserFactory(), {**payload, "choice": "left"})
    assert response.status_code == 409
    assert (Comparison.objects.get().judgement_count, Assignment.objects.count()) == (0, 0)


def test_a_judgement_with_the_sides_swapped_is_409(client):
    ComparisonFactory()
    user = UserFactory()
    shown = _next(client, user).json()
    swapped = {**_shown_payload(shown), "left": shown["right"]["id"], "right": shown["left"]["id"]}
    response = _post_judgement(client, user, swapped)
    assert response.status_code == 409
    assert "as you were shown them" in response.json()["detail"]
    assert Judgement.objects.count() == 0


@pytest.mark.parametrize("field", ["comparison", "left", "right"])
def test_an_id_beyond_64_bits_is_a_400_naming_the_field(client, field):
    ComparisonFactory()
    user = UserFactory()
    payload = {**_shown_payload(_next(client, user).json()), field: 2**63}
    response = _post_judgement(client, user, payload)
    assert response.status_code == 400
    assert f"{field}: Input should be less than or equal to" in response.json()["detail"]


@pytest.mark.parametrize("reason", ['"a\\ud800b"', '"a\\u0000b"'], ids=["lone surrogate", "NUL"])
def test_an_unstorable_reason_is_a_400_naming_reason(client, reason):
    ComparisonFactory()
    user = UserFactory()
    body = json.dumps(_shown_payload(_next(client, user).json()))[:-1] + f', "reason": {reason}}}'
    response = client.post("/api/v1/judgements", body, content_type="application/json", **_auth(user))
    assert response.status_code == 400
    assert "reason" in response.json()["detail"]
    assert Judgement.objects.count() == 0


def test_undo_is_200_with_the_judgement_it_took_back(client):
    ComparisonFactory()
    user = UserFactory()
    made = _post_judgement(client, user, _shown_payload(_next(client, user).json(), "right")).json()
    response = _undo(client, user)
    assert (response.status_code, response.json()) == (200, made)
    assert Judgement.objects.count() == 0


def test_a_retried_undo_is_404_and_takes_back_nothing_more(client):
    ComparisonFactory.create_batch(2)
    user = UserFactory()
    kept = _post_judgement(client, user, _shown_payload(_next(client, user).json())).json()
    _post_judgement(client, user, _shown_payload(_next(client, user).json()))
    _undo(client, user)
    response = _undo(client, user)
    assert response.status_code == 404
    assert list(Judgement.objects.values_list("id", flat=True)) == [kept["id"]]


def test_undo_of_a_judgement_a_finished_run_trained_on_is_409(client):
    ComparisonFactory()
    user = UserFactory()
    made = _post_judgement(client, user, _shown_payload(_next(client, user).json())).json()
    services.judgements_mark_trained(judgement_ids=[made["id"]])
    response = _undo(client, user)
    assert response.status_code == 409
    assert "training run" in response.json()["detail"]
    assert Judgement.objects.filter(id=made["id"]).exists()


def test_import_is_403_for_annotators(client):
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "hi"}\n')
    response = client.post("/api/v1/import/prompts", {"file": upload}, **_auth(UserFactory()))
    assert response.status_code == 403


def test_staff_import_pairs_creates_comparisons(client):
    upload = SimpleUploadedFile("pairs.jsonl", b'{"prompt": "Q?", "chosen": "A", "rejected": "B"}\n')
    response = client.post("/api/v1/import/pairs", {"file": upload, "judged": "true"}, **_auth(StaffFactory()))
    assert response.status_code == 201
    assert response.json()["judgements_created"] == 1
    assert Comparison.objects.count() == 1


def test_staff_import_pairs_into_a_campaign(client):
    campaign = CampaignFactory(slug="helpful")
    upload = SimpleUploadedFile("pairs.jsonl", b'{"prompt": "Q?", "chosen": "A", "rejected": "B"}\n')
    response = client.post("/api/v1/import/pairs", {"file": upload, "campaign": "helpful"}, **_auth(StaffFactory()))
    assert response.status_code == 201
    assert Comparison.objects.get().campaign == campaign


def test_staff_import_into_an_unknown_campaign_is_400_naming_it(client):
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "hi"}\n')
    response = client.post("/api/v1/import/prompts", {"file": upload, "campaign": "nope"}, **_auth(StaffFactory()))
    assert response.status_code == 400
    assert "no campaign with slug 'nope'" in response.json()["detail"]


def test_staff_import_of_a_bad_file_is_400_naming_the_line(client):
    upload = SimpleUploadedFile("pairs.jsonl", b'{"prompt": "Q?", "chosen": "A", "rejected": "B"}\n{"prompt": 1}\n')
    response = client.post("/api/v1/import/pairs", {"file": upload}, **_auth(StaffFactory()))
    assert response.status_code == 400
    assert "pairs.jsonl line 2, field 'prompt'" in response.json()["detail"]
    assert Comparison.objects.count() == 0


def test_staff_export_downloads_jsonl(client):
    comparison = ComparisonFactory()
    services.judgement_record_scripted(
        annotator=UserFactory(),
        comparison_id=comparison.id,
        left_id=comparison.completion_a_id,
        right_id=comparison.completion_b_id,
        choice="left",
    )
    response = client.get("/api/v1/export?format=jsonl", **_auth(StaffFactory()))
    assert response.status_code == 200
    (row,) = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert row["chosen"] == comparison.completion_a.text


def test_export_is_403_for_annotators(client):
    assert client.get("/api/v1/export", **_auth(UserFactory())).status_code == 403


def test_openapi_document_lists_the_endpoints(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/api/v1/comparisons/next", "/api/v1/judgements"} <= set(paths)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_an_export_that_matches_nothing_is_a_valid_empty_download(client, fmt):
    response = client.get(f"/api/v1/export?format={fmt}", **_auth(StaffFactory()))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    if fmt == "jsonl":
        assert body == b""
    elif fmt == "parquet":
        assert body.startswith(b"PAR1")
    else:
        names = zipfile.ZipFile(io.BytesIO(body)).namelist()
        assert "dataset_info.json" in names
        assert any(name.endswith(".arrow") for name in names)


# Adjudication ---------------------------------------------------------------------------


def _adjudicate(client, user, comparison_id, payload):
    url = f"/api/v1/comparisons/{comparison_id}/adjudication"
    return client.post(url, json.dumps(payload), content_type="application/json", **_auth(user))


def test_adjudication_is_200_and_recorded(client):
    comparison = ComparisonFactory()
    staff = StaffFactory()
    response = _adjudicate(client, staff, comparison.id, {"outcome": "b", "note": "cites a source"})
    assert response.status_code == 200
    body = response.json()
    assert (body["comparison"], body["outcome"], body["adjudicated_by"], body["note"]) == (
        comparison.id,
        "b",
        staff.username,
        "cites a source",
    )
    comparison.refresh_from_db()
    assert comparison.adjudicated_outcome == "b"


def test_adjudication_with_gold_makes_the_outcome_the_gold_answer(client):
    comparison = ComparisonFactory()
    response = _adjudicate(client, StaffFactory(), comparison.id, {"outcome": "tie", "gold": True})
    assert response.json()["gold_outcome"] == "tie"
    comparison.refresh_from_db()
    assert comparison.gold_outcome == "tie"


@pytest.mark.parametrize("payload", [{"outcome": "left"}, {}, {"outcome": "a", "note": "x" * 1001}])
def test_adjudication_with_a_bad_body_is_400(client, payload):
    comparison = ComparisonFactory()
    assert _adjudicate(client, StaffFactory(), comparison.id, payload).status_code == 400
    comparison.refresh_from_db()
    assert comparison.adjudicated_outcome == ""


@pytest.mark.parametrize("comparison_id", [999_999, 2**63 - 1])
def test_adjudication_of_an_unknown_comparison_is_404(client, comparison_id):
    assert _adjudicate(client, StaffFactory(), comparison_id, {"outcome": "a"}).status_code == 404


def test_adjudication_is_403_for_annotators(client):
    comparison = ComparisonFactory()
    assert _adjudicate(client, UserFactory(), comparison.id, {"outcome": "a"}).status_code == 403
    comparison.refresh_from_db()
    assert comparison.adjudicated_outcome == ""


def _judged_by_two():
    for choice in ("left", "right", "tie"):
        comparison = ComparisonFactory(target_judgements=2)
        for name in ("amy", "bob"):
            judge(UserFactory(username=name), comparison, choice)


def test_stats_gives_alpha_and_its_interval(client):
    _judged_by_two()
    alpha = client.get("/api/v1/stats", **_auth(StaffFactory())).json()["alpha"]
    assert (alpha["nominal"], alpha["interval"]["nominal"]) == (pytest.approx(1.0), [pytest.approx(1.0)] * 2)


def test_stats_gives_each_annotators_figures(client):
    _judged_by_two()
    annotators = client.get("/api/v1/stats", **_auth(StaffFactory())).json()["annotators"]
    amy = next(row for row in annotators if row["username"] == "amy")
    assert (amy["judgements"], amy["agreement"], amy["left_share"]) == (3, 1.0, 0.5)


def test_stats_is_403_for_annotators(client):
    assert client.get("/api/v1/stats", **_auth(UserFactory())).status_code == 403


# Campaigns -------------------------------------------------------------------------------------


def test_next_in_a_campaign_serves_that_campaigns_comparison(client):
    ComparisonFactory()
    campaign = CampaignFactory()
    mine = ComparisonFactory(campaign=campaign)
    response = client.get(f"/api/v1/comparisons/next?campaign={campaign.slug}", **_auth(UserFactory()))
    assert response.json()["id"] == mine.id


def test_next_in_an_unknown_campaign_is_404(client):
    response = client.get("/api/v1/comparisons/next?campaign=nope", **_auth(UserFactory()))
    assert response.status_code == 404


def test_next_in_a_refused_campaign_is_403_with_the_reason(client):
    campaign = CampaignFactory(status=CampaignStatus.PAUSED)
    ComparisonFactory(campaign=campaign)
    response = client.get(f"/api/v1/comparisons/next?campaign={campaign.slug}", **_auth(UserFactory()))
    assert (response.status_code, response.json()["reason"]) == (403, "paused")
    assert "paused" in response.json()["detail"]


def test_a_judgement_of_a_campaigns_card_is_recorded_through_the_plain_endpoint(client):
    campaign = CampaignFactory()
    ComparisonFactory(campaign=campaign)
    user = UserFactory()
    shown = client.get(f"/api/v1/comparisons/next?campaign={campaign.slug}", **_auth(user)).json()
    payload = {"comparison": shown["id"], "left": shown["left"]["id"], "right": shown["right"]["id"], "choice": "tie"}
    assert _post_judgement(client, user, payload).status_code == 201
    assert Judgement.objects.get().comparison.campaign_id == campaign.id
