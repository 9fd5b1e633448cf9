"""The import page's gold option."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.models import Comparison
from tests.annotate.factories import StaffFactory

pytestmark = pytest.mark.django_db

PAIR = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def _file(records, name="gold.jsonl"):
    return SimpleUploadedFile(name, "".join(json.dumps(r) + "\n" for r in records).encode())


def test_a_gold_import_from_the_page_expects_the_chosen_side(staff_client):
    response = staff_client.post("/annotate/import/", {"kind": "pairs", "file": _file([PAIR]), "gold": "on"})
    assert response.status_code == 200
    comparison = Comparison.objects.select_related("completion_a").get()
    assert comparison.gold_outcome == ("a" if comparison.completion_a.text == "4" else "b")


def test_a_prompts_file_cannot_be_gold(staff_client):
    upload = _file([{"prompt": "One?"}], name="prompts.jsonl")
    response = staff_client.post("/annotate/import/", {"kind": "prompts", "file": upload, "gold": "on"})
    assert response.status_code == 400
    assert "gold items" in response.content.decode()
