"""The API root's rules for every operation: text the database can hold, errors that name their field."""

import json

import pytest

from annotate import services
from config.api_types import NulInText, nul_check
from tests.annotate.factories import StaffFactory

pytestmark = pytest.mark.django_db


def _auth(user):
    return {"HTTP_AUTHORIZATION": f"Bearer {services.api_token_create(user=user).key}"}


def test_nul_check_names_the_path_to_the_text():
    with pytest.raises(NulInText, match=r"^body.exclude_annotators.1: text cannot contain NUL"):
        nul_check({"exclude_annotators": ["ann", "a\x00b"]}, "body")


def test_nul_check_lets_ordinary_text_through():
    nul_check({"reason": "clearer", "tags": ["a", "b"], "k": 3}, "body")


def test_a_nul_in_a_query_parameter_is_a_400_naming_it(client):
    response = client.get("/api/v1/export?exclude_annotator=a%00b", **_auth(StaffFactory()))
    assert response.status_code == 400
    assert response.json()["detail"] == "exclude_annotator: text cannot contain NUL characters"


def test_a_nul_in_a_json_body_is_a_400_naming_it(client):
    body = json.dumps({"base_version": "a\x00b"})
    response = client.post("/api/v1/runs", body, content_type="application/json", **_auth(StaffFactory()))
    assert response.status_code == 400
    assert response.json()["detail"] == "body.base_version: text cannot contain NUL characters"


def test_a_body_that_is_not_json_is_still_a_400(client):
    response = client.post("/api/v1/runs", "{", content_type="application/json", **_auth(StaffFactory()))
    assert response.status_code == 400
    assert response.json()["detail"] == "Cannot parse request body"
