"""A queued export's file as a download, streamed from the artifact store: the web never reads a worker's disk."""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, HttpResponseBase

from annotate.models import ExportJob
from config.artifacts import ArtifactError
from config.artifacts.responses import store_file_response


class ExportFileMissing(Exception):
    """The export's file is in neither the store nor (for an old job) this host's disk; the message says where."""


def export_job_file_response(job: ExportJob) -> HttpResponseBase:
    """The finished job's file under the name it was written with; ``ExportFileMissing`` when it cannot be read."""
    if "://" not in job.path:
        # Jobs finished before exports went through the store recorded the path their worker wrote on this host.
        path = Path(job.path)
        if not job.path or not path.is_file():
            raise ExportFileMissing(
                f"export {job.pk} was written to {job.path or 'no file'} on the host that ran it, before exports went "
                "through the artifact store, and that file is not on this host: run the export again"
            )
        return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
    try:
        return store_file_response(job.path, filename=job.path.rsplit("/", 1)[-1])
    except ArtifactError as exc:
        raise ExportFileMissing(f"export {job.pk}: {exc}") from exc
