"""Large exports leave the web request: queued on ``default``, written by a real worker, downloaded from the job."""

import json
from pathlib import Path

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


def test_a_worker_writes_the_queued_export_with_its_rows_counted(transactional_db, worker, wait_for, tmp_path):
    _judged(5)
    inline = services.export_preferences(path=tmp_path / "inline.jsonl", fmt="jsonl")
    job = services.export_job_start(user=None, fmt="jsonl", conversational=False, judgement_filter=JudgementFilter())
    worker.start(burst=True, env={"DUET_EXPORTS_DIR": str(tmp_path / "exports")})
    wait_for(lambda: _finished(job), what="the export job to end")
    assert job.status == ExportJob.Status.SUCCEEDED, job.error or worker.output()
    assert (job.rows_expected, job.rows_written) == (5, 5)
    assert Path(job.path).parent == tmp_path / "exports" / str(job.pk)
    assert Path(job.path).read_text() == (tmp_path / "inline.jsonl").read_text()
    assert inline.rows == 5


def test_the_api_answers_a_large_export_with_202_and_serves_the_file_when_written(
    transactional_db, worker, wait_for, tmp_path, settings
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
    worker.start(burst=True, env={"DUET_EXPORTS_DIR": str(tmp_path / "exports")})
    wait_for(lambda: _finished(ExportJob.objects.get(pk=body["id"])), what="the export job to end")
    done = api.get(body["url"]).json()
    assert (done["status"], done["rows_written"]) == ("succeeded", 3)
    rows = b"".join(api.get(done["download_url"]).streaming_content).decode().splitlines()
    assert len(rows) == 3
    assert all(json.loads(row)["chosen"] for row in rows)


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
