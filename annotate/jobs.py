"""RQ entry points of the annotate app: primitive ids in, one service call."""

from __future__ import annotations

from annotate import services


def export(job_id: int) -> None:
    services.export_job_execute(job_id=job_id)
