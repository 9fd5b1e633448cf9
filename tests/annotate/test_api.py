import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate import services
from annotate.models import Comparison, Judgement
from tests.annotate.factories import ComparisonFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def _auth(user):
    return {"HTTP_AUTHORIZATION": f"Bearer {services.api_token_get_or_create(user=user)}"}


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


def test_second_judgement_is_409(client):
    comparison = ComparisonFactory(target_judgements=2)
    user = UserFactory()
    payload = {
        "comparison": comparison.id,
        "left": comparison.completion_a_id,
        "right": comparison.completion_b_id,
        "choice": "left",
    }
    _post_judgement(client, user, payload)
    response = _post_judgement(client, user, payload)
    assert response.status_code == 409
    assert "already judged" in response.json()["detail"]


def test_unknown_choice_is_a_clear_400_or_422(client):
    comparison = ComparisonFactory()
    payload = {
        "comparison": comparison.id,
        "left": comparison.completion_a_id,
        "right": comparison.completion_b_id,
        "choice": "meh",
    }
    response = _post_judgement(client, UserFactory(), payload)
    assert response.status_code == 400
    assert "choice" in json.dumps(response.json())


def test_wrong_completion_is_400(client):
    comparison, other = ComparisonFactory.create_batch(2)
    payload = {"comparison": comparison.id, "left": other.completion_a_id, "right": comparison.completion_b_id}
    response = _post_judgement(client, UserFactory(), {**payload, "choice": "left"})
    assert response.status_code == 400
    assert "two completions" in response.json()["detail"]


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


def test_staff_import_of_a_bad_file_is_400_naming_the_line(client):
    upload = SimpleUploadedFile("pairs.jsonl", b'{"prompt": "Q?", "chosen": "A", "rejected": "B"}\n{"prompt": 1}\n')
    response = client.post("/api/v1/import/pairs", {"file": upload}, **_auth(StaffFactory()))
    assert response.status_code == 400
    assert "pairs.jsonl line 2, field 'prompt'" in response.json()["detail"]
    assert Comparison.objects.count() == 0


def test_staff_export_downloads_jsonl(client):
    comparison = ComparisonFactory()
    services.judgement_record(
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
