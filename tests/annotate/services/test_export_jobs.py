"""Large exports leave the web request: queued on ``default``, written by a real worker into the artifact store,
streamed from the store by the web."""

import re

import pytest
from django.test import Client, override_settings

from annotate import services
from annotate.filters import JudgementFilter
from annotate.models import ExportJob
from config.queues import QueueUnavailable
from tests.annotate.factories import ComparisonFactory, StaffFactory, UserFactory
from tests.annotate.services._helpers import judge

pytestmark = pytest.mark.usefixtures("private_queues")
LARGE_EXPORT = {"user": None, "fmt": "jsonl", "conversational": False, "judgement_filter": JudgementFilter()}
REDIS_DOWN = {"gpu": {"URL": "redis://127.0.0.1:1/0"}, "default": {"URL": "redis://127.0.0.1:1/0"}}


def _judged(count: int) -> None:
    user = UserFactory()
    for _ in range(count):
        judge(user, ComparisonFactory(), "left")


def _finished(job: ExportJob) -> bool:
    job.refresh_from_db()
    return job.finished


@pytest.mark.django_db
def test_an_export_up_to_the_limit_is_written_in_the_request(settings):
    settings.DUET_EXPORT_INLINE_MAX_ROWS = 3
    _judged(3)
    assert services.export_job_start_if_large(**LARGE_EXPORT) is None
    assert not ExportJob.objects.exists()


@pytest.mark.django_db
def test_an_export_beyond_the_limit_is_queued_with_its_count(settings):
    settings.DUET_EXPORT_INLINE_MAX_ROWS = 3
    _judged(4)
    job = services.export_job_start_if_large(**LARGE_EXPORT)
    assert job is not None
    assert (job.status, job.rows_expected) == (ExportJob.Status.QUEUED, 4)


@pytest.mark.django_db
@override_settings(RQ_QUEUES=REDIS_DOWN)
def test_with_redis_down_no_export_job_is_created():
    with pytest.raises(QueueUnavailable, match="cannot be reached"):
        services.export_job_start(user=None, fmt="jsonl", conversational=False, judgement_filter=JudgementFilter())
    assert not ExportJob.objects.exists()


def test_a_worker_publishes_the_queued_export_into_the_store_and_keeps_no_copy(
    artifacts, transactional_db, worker, wait_for, tmp_path
):
    _judged(5)
    inline = services.export_preferences(path=tmp_path / "inline.jsonl", fmt="jsonl")
    job = services.export_job_start(user=None, fmt="jsonl", conversational=False, judgement_filter=JudgementFilter())
    worker.start(burst=True, env={"DUET_EXPORTS_DIR": str(tmp_path / "scratch")})
    wait_for(lambda: _finished(job), what="the export job to end")
    assert job.status == ExportJob.Status.SUCCEEDED, job.error or worker.output()
    assert (job.rows_expected, job.rows_written) == (5, 5)
    assert re.fullmatch(rf"{re.escape(artifacts.url)}/exports/{job.pk}/preferences-standard-[\d-]+\.jsonl", job.path)
    with artifacts.store.open(job.path) as stored:
        assert stored.read() == (tmp_path / "inline.jsonl").read_bytes()
    assert inline.rows == 5
    assert not (tmp_path / "scratch" / str(job.pk)).exists(), "the worker's scratch copy is removed once published"


def test_the_api_answers_a_large_export_with_202_and_streams_the_file_from_the_store(
    artifacts, transactional_db, worker, wait_for, tmp_path, settings
):
    settings.DUET_EXPORT_INLINE_MAX_ROWS = 2
    _judged(3)
    token = services.api_token_create(user=StaffFactory()).key
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api.get("/api/v1/export", {"format": "jsonl"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["rows_expected"], body["download_url"]) == ("queued", 3, None)
    assert api.get(f"/api/v1/exports/{body['id']}/file").status_code == 409
    worker.start(burst=True, env={"DUET_EXPORTS_DIR": str(tmp_path / "scratch")})
    wait_for(lambda: _finished(ExportJob.objects.get(pk=body["id"])), what="the export job to end")
    done = api.get(body["url"]).json()
    assert (done["status"], done["rows_written"]) == ("succeeded", 3)
    download = api.get(done["download_url"])
    job = ExportJob.objects.get(pk=body["id"])
    assert download["Content-Disposition"] == f'attachment; filename="{job.path.rsplit("/", 1)[-1]}"'
    with artifacts.store.open(job.path) as stored:
        assert b"".join(download.streaming_content) == stored.read()
    assert not (tmp_path / "scratch" / str(job.pk)).exists()


@pytest.mark.django_db
def test_the_export_page_sends_a_large_export_to_its_job_page(client, settings):
    settings.DUET_EXPORT_INLINE_MAX_ROWS = 1
    _judged(2)
    client.force_login(StaffFactory())
    response = client.post("/annotate/export/", {"fmt": "parquet", "min_agreement": "0"})
    job = ExportJob.objects.get()
    assert response["Location"] == f"/annotate/exports/{job.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert 'data-testid="export-status">queued' in page
    assert 'hx-trigger="every' in page, "the page polls while the export is not written"
    assert client.get(f"/annotate/exports/{job.pk}/download/").status_code == 404


@pytest.mark.django_db
def test_an_unknown_export_job_is_a_404_in_the_api():
    token = services.api_token_create(user=StaffFactory()).key
    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/exports/99")
    assert response.status_code == 404


def _succeeded(path: str) -> ExportJob:
    return ExportJob.objects.create(
        fmt="hf", status=ExportJob.Status.SUCCEEDED, rows_expected=1, rows_written=1, path=path
    )


@pytest.mark.django_db
def test_the_export_page_streams_a_finished_file_from_the_store(client, file_artifacts, tmp_path):
    local = tmp_path / "preferences-standard-20261203-101500.zip"
    local.write_bytes(b"PK\x03\x04 a zipped hf folder")
    job = _succeeded(file_artifacts.store.put_file(local, "exports/7/preferences-standard-20261203-101500.zip"))
    local.unlink()
    client.force_login(StaffFactory())
    response = client.get(f"/annotate/exports/{job.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="preferences-standard-20261203-101500.zip"'
    assert response["Content-Type"] == "application/zip"
    assert b"".join(response.streaming_content) == b"PK\x03\x04 a zipped hf folder"


@pytest.mark.django_db
def test_a_file_gone_from_the_store_is_a_404_that_names_it(client, file_artifacts):
    job = _succeeded(file_artifacts.store.uri("exports/8/preferences-standard-20261203-101500.jsonl"))
    client.force_login(StaffFactory())
    response = client.get(f"/annotate/exports/{job.pk}/download/")
    assert response.status_code == 404
    assert "exports/8/preferences-standard-20261203-101500.jsonl not found in the store" in response.content.decode()


@pytest.mark.django_db
def test_an_export_written_before_the_store_still_downloads_from_this_hosts_disk(client, tmp_path):
    old = tmp_path / "exports" / "3" / "preferences-standard-20261201-090000.jsonl"
    old.parent.mkdir(parents=True)
    old.write_text('{"prompt": "p"}\n')
    job = _succeeded(str(old))
    client.force_login(StaffFactory())
    response = client.get(f"/annotate/exports/{job.pk}/download/")
    assert response["Content-Disposition"] == 'attachment; filename="preferences-standard-20261201-090000.jsonl"'
    assert b"".join(response.streaming_content) == b'{"prompt": "p"}\n'


@pytest.mark.django_db
def test_an_export_written_before_the_store_on_another_host_is_a_clear_404_in_the_api(tmp_path):
    job = _succeeded(str(tmp_path / "exports" / "4" / "preferences-standard-20261201-090000.jsonl"))
    token = services.api_token_create(user=StaffFactory()).key
    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(f"/api/v1/exports/{job.pk}/file")
    assert response.status_code == 404
    assert "that file is not on this host: run the export again" in response.json()["detail"]
