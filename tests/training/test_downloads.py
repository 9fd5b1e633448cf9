"""Downloads streamed from the artifact store: staff only, the bytes the store holds, a clear 404 otherwise."""

from __future__ import annotations

import io
import tarfile

import pytest
from django.test import Client

from annotate import services as annotate_services
from config.artifacts.store import MANIFEST
from tests.annotate.factories import StaffFactory, UserFactory
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(StaffFactory())
    return client


@pytest.fixture
def published(artifacts, tmp_path) -> ModelVersion:
    folder = tmp_path / "weights"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 50_000)  # several store chunks
    (folder / "config.json").write_text('{"layers": 2}')
    (folder / "sub" / "tokenizer.json").write_text("{}")
    ref = artifacts.store.put_dir(folder, "models/tiny")
    return ModelVersion.objects.create(
        name="tiny+dpo3", path=str(folder), store_url=ref.uri, content_hash=ref.content_hash
    )


def members(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_a_version_downloads_as_a_tar_of_its_published_files(staff_client, published, tmp_path):
    response = staff_client.get(f"/training/models/{published.pk}/download/")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="tiny-dpo3.tar"'
    files = members(b"".join(response.streaming_content))
    assert files.pop(f"tiny-dpo3/{MANIFEST}")
    assert files == {
        "tiny-dpo3/model.safetensors": bytes(range(256)) * 50_000,
        "tiny-dpo3/config.json": b'{"layers": 2}',
        "tiny-dpo3/sub/tokenizer.json": b"{}",
    }


def test_the_version_page_links_its_download(staff_client, published):
    page = staff_client.get(f"/training/models/{published.pk}/").content.decode()
    assert f'href="/training/models/{published.pk}/download/"' in page


def test_downloads_are_staff_only(client, published):
    client.force_login(UserFactory())
    assert client.get(f"/training/models/{published.pk}/download/").status_code == 403
    assert client.get(f"/training/runs/{_run_with_dataset(published).pk}/dataset.jsonl").status_code == 403


def test_an_anonymous_download_goes_to_the_login_page(client, published):
    response = client.get(f"/training/models/{published.pk}/download/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_version_outside_the_store_is_a_404_that_says_so(staff_client, file_artifacts):
    version = ModelVersion.objects.create(name="hub", path="HuggingFaceTB/SmolLM2-135M-Instruct")
    response = staff_client.get(f"/training/models/{version.pk}/download/")
    assert response.status_code == 404
    assert "hub is not in the artifact store" in response.content.decode()


def _run_with_dataset(version: ModelVersion, artifacts=None, tmp_path=None) -> TrainingRun:  # type: ignore[no-untyped-def]
    run = TrainingRun.objects.create(base_version=version)
    if artifacts is not None:
        (tmp_path / "dataset.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
        run.dataset_path = artifacts.store.put_file(tmp_path / "dataset.jsonl", f"runs/train-{run.pk}/dataset.jsonl")
        run.save(update_fields=["dataset_path"])
    return run


def test_a_runs_dataset_streams_from_the_store(staff_client, published, artifacts, tmp_path):
    run = _run_with_dataset(published, artifacts, tmp_path)
    response = staff_client.get(f"/training/runs/{run.pk}/dataset.jsonl")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (tmp_path / "dataset.jsonl").read_bytes()
    assert (
        f'href="/training/runs/{run.pk}/dataset.jsonl"'
        in staff_client.get(f"/training/runs/{run.pk}/").content.decode()
    )


def test_a_run_without_a_dataset_is_a_404_that_says_so(staff_client, published):
    run = _run_with_dataset(published)
    response = staff_client.get(f"/training/runs/{run.pk}/heldout.jsonl")
    assert response.status_code == 404
    assert f"Training run {run.pk} has no heldout file yet" in response.content.decode()


def test_a_dataset_on_a_workers_disk_is_not_read(staff_client, published, tmp_path):
    (tmp_path / "d.jsonl").write_text("{}\n")
    run = TrainingRun.objects.create(base_version=published, dataset_path=str(tmp_path / "d.jsonl"))
    response = staff_client.get(f"/training/runs/{run.pk}/dataset.jsonl")
    assert response.status_code == 404
    assert "is on a worker's disk" in response.content.decode()


def test_the_api_streams_the_same_tar_to_a_staff_token(client, published):
    staff_auth = {"HTTP_AUTHORIZATION": f"Bearer {annotate_services.api_token_create(user=StaffFactory()).key}"}
    user_auth = {"HTTP_AUTHORIZATION": f"Bearer {annotate_services.api_token_create(user=UserFactory()).key}"}
    assert client.get(f"/api/v1/models/{published.pk}/download", **user_auth).status_code == 403
    response = client.get(f"/api/v1/models/{published.pk}/download", **staff_auth)
    assert response.status_code == 200
    assert "tiny-dpo3/config.json" in members(b"".join(response.streaming_content))


def test_the_api_answers_a_missing_dataset_with_404_json(client, published):
    staff_auth = {"HTTP_AUTHORIZATION": f"Bearer {annotate_services.api_token_create(user=StaffFactory()).key}"}
    run = _run_with_dataset(published)
    response = client.get(f"/api/v1/runs/{run.pk}/dataset", **staff_auth)
    assert response.status_code == 404
    assert "has no dataset file yet" in response.json()["detail"]
