"""Large exports as jobs: a request that would write more than ``DUET_EXPORT_INLINE_MAX_ROWS`` rows queues one.

The web never spends seconds of CPU on an export: ``export_job_start_if_large`` counts the rows the filter can
give (one query) and queues a large export on the ``default`` queue, where a worker (on any host) writes the file
in its scratch folder ``DUET_EXPORTS_DIR``, reports its progress, and publishes the file into the artifact store
under ``exports/<job id>/``, which the web streams it from; a small one the request writes itself. The export's
page and ``GET /api/v1/exports/{id}`` follow a queued one.
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from annotate import selectors
from annotate.filters import JudgementFilter
from annotate.models import ExportJob
from annotate.services.export import EXPORT_FORMATS, export_download
from config.artifacts import artifact_store
from config.queues import DEFAULT_QUEUE, enqueue_on_commit, queue_check

EXPORTS_PREFIX = "exports"


def export_job_start_if_large(
    *, user: User | None, fmt: str, conversational: bool, judgement_filter: JudgementFilter
) -> ExportJob | None:
    """Queue the export when it may write more rows than a request should; ``None`` when the request may write it.

    The rows are counted once (an upper bound, one query) and the job keeps the count.
    """
    rows = selectors.export_rows_at_most(judgement_filter=judgement_filter)
    if rows <= settings.DUET_EXPORT_INLINE_MAX_ROWS:
        return None
    return export_job_start(
        user=user, fmt=fmt, conversational=conversational, judgement_filter=judgement_filter, rows_expected=rows
    )


def export_job_start(
    *,
    user: User | None,
    fmt: str,
    conversational: bool,
    judgement_filter: JudgementFilter,
    rows_expected: int | None = None,
) -> ExportJob:
    """Queue an export on the ``default`` queue; ``QueueUnavailable`` (nothing created) when Redis is down.

    ``rows_expected`` is the caller's count of ``selectors.export_rows_at_most``, when it has one.
    """
    from annotate import jobs

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    queue_check(name=DEFAULT_QUEUE)
    with transaction.atomic():
        job = ExportJob.objects.create(
            created_by=user, fmt=fmt, conversational=conversational, filters=judgement_filter.to_json(),
            rows_expected=(
                rows_expected if rows_expected is not None
                else selectors.export_rows_at_most(judgement_filter=judgement_filter)
            ),
        )

        def enqueued(rq_job_id: str) -> None:
            ExportJob.objects.filter(pk=job.pk).update(rq_job_id=rq_job_id)

        def discard() -> None:
            ExportJob.objects.filter(pk=job.pk).delete()

        enqueue_on_commit(
            job=jobs.export, args=(job.pk,), queue=DEFAULT_QUEUE, on_enqueued=enqueued, on_failure=discard
        )
    return job


def export_job_execute(*, job_id: int) -> None:
    """Write the export's file and publish it into the artifact store (the worker's side).

    The job's ``path`` is then the file's store URI. The scratch copy is removed whatever happens; a failure is
    recorded on the job with its traceback.
    """
    job = ExportJob.objects.get(pk=job_id)
    ExportJob.objects.filter(pk=job_id).update(status=ExportJob.Status.RUNNING, started_at=timezone.now())
    folder = Path(settings.DUET_EXPORTS_DIR) / str(job_id)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        path = export_download(
            directory=folder, fmt=job.fmt, conversational=job.conversational,
            judgement_filter=JudgementFilter.from_json(job.filters),
            progress=lambda rows: _progress(job_id, rows),
        )
        uri = artifact_store().put_file(path, f"{EXPORTS_PREFIX}/{job_id}/{path.name}")
    except Exception as exc:
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportJob.Status.FAILED, finished_at=timezone.now(),
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}",
        )
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ExportJob.objects.filter(pk=job_id).update(status=ExportJob.Status.SUCCEEDED, finished_at=timezone.now(), path=uri)


def _progress(job_id: int, rows: int) -> None:
    ExportJob.objects.filter(pk=job_id).update(rows_written=rows)
