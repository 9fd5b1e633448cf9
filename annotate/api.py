"""JSON API for annotators and staff, under ``/api/v1/`` with bearer-token auth."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from django.http import FileResponse, HttpRequest
from ninja import Field, File, Form, Router, Schema
from ninja.files import UploadedFile

from annotate import downloads, selectors, services
from annotate.filters import JudgementFilter, quality_options
from annotate.formats import ImportFileError
from annotate.limits import ID_MAX
from annotate.models import Comparison, ExportJob, Judgement
from config.api_types import RowId
from config.auth import BearerToken, StaffBearerToken
from config.queues import QueueUnavailable

router = Router(auth=BearerToken(), tags=["annotate"])


class MessageOut(Schema):
    role: str
    content: str


class CompletionOut(Schema):
    id: int
    text: str


class ComparisonOut(Schema):
    id: int
    prompt: list[MessageOut]
    left: CompletionOut
    right: CompletionOut


# An id the database can hold: a larger number is a 400 naming the field, not an overflow there.
Id = Annotated[int, Field(ge=1, le=ID_MAX)]


class JudgementIn(Schema):
    comparison: Id
    left: Id
    right: Id
    choice: Literal["left", "right", "tie", "both_bad"]
    strength: Literal["slightly", "clearly", "much", ""] = ""
    reason: str = ""


class JudgementOut(Schema):
    id: int
    comparison: int
    left: int
    right: int
    choice: str
    winner: int | None
    strength: str
    reason: str
    created_at: datetime


class ImportOut(Schema):
    records: int
    prompts_created: int
    comparisons_created: int
    judgements_created: int
    judged_before_as: str


class ErrorOut(Schema):
    detail: str


class RefusedOut(Schema):
    detail: str
    reason: Literal["paused", "closed", "forbidden", "flagged"]


@router.get("/comparisons/next", response={200: ComparisonOut, 204: None, 403: RefusedOut, 404: ErrorOut})
def comparison_next(request: HttpRequest, campaign: str | None = None) -> Any:
    """Your next card in ``campaign`` (a slug; the default campaign when left out), leased to you.

    204 when nothing is left for you; 403 with the ``reason`` when the campaign serves you no cards
    (paused, closed, forbidden, or flagged); 404 for an unknown slug. Judge it with ``POST /judgements``:
    the lease decides its campaign.
    """
    try:
        chosen = services.campaign_resolve(slug=campaign)
        card = services.lease_take(annotator=request.user, campaign=chosen)  # type: ignore[arg-type]
    except services.CampaignNotFound as exc:
        return 404, {"detail": str(exc)}
    except services.QueueRefused as refusal:
        return 403, {"detail": refusal.message, "reason": refusal.reason}
    if card is None:
        return 204, None
    return 200, {
        "id": card.comparison_id,
        "prompt": list(card.prompt),
        "left": {"id": card.left.id, "text": card.left.text},
        "right": {"id": card.right.id, "text": card.right.text},
    }


@router.post("/judgements", response={201: JudgementOut, 400: ErrorOut, 409: ErrorOut})
def judgement_create(request: HttpRequest, payload: JudgementIn) -> Any:
    try:
        judgement = services.judgement_record(
            annotator=request.user,  # type: ignore[arg-type]
            comparison_id=payload.comparison,
            left_id=payload.left,
            right_id=payload.right,
            choice=payload.choice,
            strength=payload.strength,
            reason=payload.reason,
        )
    except services.JudgementInvalid as exc:
        return 400, {"detail": str(exc)}
    except services.JudgementConflict as exc:
        return 409, {"detail": str(exc)}
    return 201, _judgement_out(judgement)


@router.post("/judgements/undo", response={200: JudgementOut, 404: ErrorOut, 409: ErrorOut})
def judgement_undo(request: HttpRequest) -> Any:
    """Take back your latest judgement, once: 200 with what was taken back; a retry is a 404."""
    try:
        judgement = services.judgement_undo_last(annotator=request.user)  # type: ignore[arg-type]
    except services.JudgementConflict as exc:
        return 409, {"detail": str(exc)}
    if judgement is None:
        return 404, {"detail": "you have no judgement to undo: an undo takes back your latest one, once"}
    return 200, _judgement_out(judgement)


def _judgement_out(judgement: Judgement) -> dict[str, Any]:
    return {
        "id": judgement.id,
        "comparison": judgement.comparison_id,
        "left": judgement.left_id,
        "right": judgement.right_id,
        "choice": judgement.choice,
        "winner": judgement.winner_id,
        "strength": judgement.strength,
        "reason": judgement.reason,
        "created_at": judgement.created_at,
    }


def _import(
    kind: str,
    file: UploadedFile,
    fmt: str | None,
    judged: bool,
    k: int | None,
    campaign: str | None,
    gold: bool = False,
) -> Any:
    stream = file.file
    if stream is None:
        return 400, {"detail": "the upload is empty"}
    name = Path(file.name or "upload").name
    try:
        target = services.campaign_resolve(slug=campaign)
        if kind == "prompts":
            result = services.prompts_import(stream=stream, name=name, fmt=fmt, campaign=target)
        else:
            result = services.pairs_import(
                stream=stream, name=name, fmt=fmt, judged=judged, target_judgements=k, campaign=target, gold=gold
            )
    except (ImportFileError, services.CampaignNotFound) as exc:
        return 400, {"detail": str(exc)}
    return 201, result.__dict__


@router.post("/import/prompts", auth=StaffBearerToken(), response={201: ImportOut, 400: ErrorOut})
def import_prompts(
    request: HttpRequest,
    file: File[UploadedFile],
    format: Form[str | None] = None,
    campaign: Form[str | None] = None,
) -> Any:
    """Prompts join ``campaign`` (a slug; the default campaign when none)."""
    return _import("prompts", file, format or None, False, None, campaign or None)


@router.post("/import/pairs", auth=StaffBearerToken(), response={201: ImportOut, 400: ErrorOut})
def import_pairs(
    request: HttpRequest,
    file: File[UploadedFile],
    format: Form[str | None] = None,
    judged: Form[bool] = False,
    judgements_per_comparison: Form[int | None] = None,
    campaign: Form[str | None] = None,
    gold: Form[bool] = False,
) -> Any:
    """Pairs as open comparisons of ``campaign`` (a slug; the default campaign when none), with its k unless
    one is given; ``judged`` records the file's choices, ``gold`` makes them gold items' answers."""
    return _import("pairs", file, format or None, judged, judgements_per_comparison, campaign or None, gold)


class ExportJobOut(Schema):
    id: int
    status: str
    format: str
    rows_expected: int
    rows_written: int
    error: str
    url: str
    download_url: str | None


def _export_job_out(job: ExportJob) -> dict[str, Any]:
    done = job.status == ExportJob.Status.SUCCEEDED
    return {
        "id": job.pk, "status": job.status, "format": job.fmt, "rows_expected": job.rows_expected,
        "rows_written": job.rows_written, "error": job.error.split("\n\n")[0],
        "url": f"/api/v1/exports/{job.pk}", "download_url": f"/api/v1/exports/{job.pk}/file" if done else None,
    }


@router.get(
    "/export", auth=StaffBearerToken(), response={200: None, 202: ExportJobOut, 400: ErrorOut, 503: ErrorOut}
)
def export(
    request: HttpRequest,
    format: Literal["jsonl", "parquet", "hf"] = "jsonl",
    conversational: bool = False,
    min_agreement: float = 0.0,
    since: datetime | None = None,
    exclude_annotator: list[str] | None = None,
    campaign: str | None = None,
    include_flagged: bool = False,
    exclude_rushed: bool = False,
) -> Any:
    """The preference dataset as a file download (``hf``: the ``save_to_disk`` folder, zipped).

    Each ``exclude_annotator`` (repeatable, or comma-separated) leaves out a username or an import file.
    ``campaign`` (a slug) keeps one campaign's judgements; flagged annotators' votes are left out
    unless ``include_flagged``; ``exclude_rushed`` leaves out votes faster than the campaign's threshold.
    An export of more than ``DUET_EXPORT_INLINE_MAX_ROWS`` comparisons is queued instead: 202 with the job,
    whose ``url`` to poll gives its ``download_url`` once written.
    """
    try:
        judgement_filter = JudgementFilter.from_inputs(
            since=since,
            min_agreement=min_agreement,
            exclude=exclude_annotator or (),
            **quality_options(
                {"campaign": campaign, "include_flagged": include_flagged, "exclude_rushed": exclude_rushed}
            ),
        )
    except ValueError as exc:
        return 400, {"detail": str(exc)}
    try:
        job = services.export_job_start_if_large(
            user=request.user, fmt=format, conversational=conversational,  # type: ignore[arg-type]
            judgement_filter=judgement_filter,
        )
    except QueueUnavailable as exc:
        return 503, {"detail": str(exc)}
    if job is not None:
        return 202, _export_job_out(job)
    tmp = tempfile.TemporaryDirectory(prefix="duet-export-")
    try:
        download = services.export_download(
            directory=Path(tmp.name), fmt=format, conversational=conversational, judgement_filter=judgement_filter
        )
    except ValueError as exc:
        tmp.cleanup()
        return 400, {"detail": str(exc)}
    response = FileResponse(open(download, "rb"), as_attachment=True, filename=download.name)  # noqa: SIM115
    response._resource_closers.append(tmp.cleanup)  # type: ignore[attr-defined]
    return response


@router.get("/exports/{job_id}", auth=StaffBearerToken(), response={200: ExportJobOut, 404: ErrorOut})
def export_job(request: HttpRequest, job_id: RowId) -> Any:
    """A queued export: its status and progress, and its ``download_url`` once the file is written."""
    job = selectors.export_job(job_id=job_id)
    if job is None:
        return 404, {"detail": f"no export {job_id}"}
    return 200, _export_job_out(job)


@router.get("/exports/{job_id}/file", auth=StaffBearerToken(), response={200: None, 404: ErrorOut, 409: ErrorOut})
def export_job_file(request: HttpRequest, job_id: RowId) -> Any:
    """The file a queued export wrote, streamed from the artifact store."""
    job = selectors.export_job(job_id=job_id)
    if job is None:
        return 404, {"detail": f"no export {job_id}"}
    if job.status != ExportJob.Status.SUCCEEDED:
        return 409, {"detail": f"export {job_id} is {job.status}: its file is not written"}
    try:
        return downloads.export_job_file_response(job)
    except downloads.ExportFileMissing as exc:
        return 404, {"detail": str(exc)}


class AdjudicationIn(Schema):
    outcome: Literal["a", "b", "tie", "both_bad"] = Field(
        description="Completion A or B wins, or the comparison is a tie or both bad (then it is left out of exports)."
    )
    note: str = ""
    gold: bool = Field(default=False, description="Also make the decided outcome this comparison's gold answer.")


class AdjudicationOut(Schema):
    comparison: int
    outcome: str
    gold_outcome: str
    adjudicated_by: str
    adjudicated_at: datetime
    note: str


@router.post(
    "/comparisons/{comparison_id}/adjudication",
    auth=StaffBearerToken(),
    response={200: AdjudicationOut, 400: ErrorOut, 404: ErrorOut},
)
def comparison_adjudication(request: HttpRequest, comparison_id: RowId, payload: AdjudicationIn) -> Any:
    """Decide a comparison's outcome, overriding its judgements' majority in exports; a later call replaces it."""
    try:
        comparison = services.comparison_adjudicate(
            comparison_id=comparison_id,
            outcome=payload.outcome,
            by=request.user,  # type: ignore[arg-type]
            note=payload.note,
            gold=payload.gold,
        )
    except Comparison.DoesNotExist:
        return 404, {"detail": f"no comparison {comparison_id}"}
    except services.AdjudicationInvalid as exc:
        return 400, {"detail": str(exc)}
    return 200, {
        "comparison": comparison.pk,
        "outcome": comparison.adjudicated_outcome,
        "gold_outcome": comparison.gold_outcome,
        "adjudicated_by": request.user.get_username(),
        "adjudicated_at": comparison.adjudicated_at,
        "note": comparison.adjudication_note,
    }


class AlphaIntervalOut(Schema):
    nominal: tuple[float, float] | None
    ordinal: tuple[float, float] | None


class AlphaOut(Schema):
    nominal: float | None
    ordinal: float | None
    interval: AlphaIntervalOut


class AnnotatorReliabilityOut(Schema):
    username: str
    judgements: int
    agreement: float | None
    kappa: float | None
    left_share: float | None
    left_share_interval: tuple[float, float] | None
    median_seconds: float | None
    rushed: int


class StatsOut(Schema):
    alpha: AlphaOut
    annotators: list[AnnotatorReliabilityOut]


@router.get("/stats", auth=StaffBearerToken(), response=StatsOut)
def stats(request: HttpRequest) -> Any:
    """Krippendorff's alpha (nominal, ordinal, 95% bootstrap intervals) and each annotator's reliability figures."""
    reliability = selectors.annotator_reliability()
    alpha = reliability.alpha
    return {
        "alpha": {
            "nominal": alpha.nominal,
            "ordinal": alpha.ordinal,
            "interval": {"nominal": alpha.nominal_interval, "ordinal": alpha.ordinal_interval},
        },
        "annotators": reliability.annotators,
    }
