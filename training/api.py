"""JSON API of the training app (staff only): runs, model versions and generation rounds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema
from pydantic import ConfigDict, Field, create_model

from annotate import services as annotate_services
from annotate.filters import JudgementFilter, quality_options
from config.api_types import RowId
from config.auth import StaffBearerToken
from training import downloads, selectors, services
from training.engine_settings import SAMPLING_FIELDS, sampling_spec, schema_field, train_settings_fields
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingMetric, TrainingRun
from training.services.control import MAX_PROMPTS_MAX

router = Router(auth=StaffBearerToken(), tags=["training"])


class ErrorOut(Schema):
    detail: str


class _Closed(Schema):
    """A schema that refuses names it does not declare, so a misspelt setting is a 400, not ignored."""

    model_config = ConfigDict(extra="forbid")


# Every hyper-parameter of TrainConfig with its type and bounds; the run start checks them again, exactly.
TrainingSettingsIn = create_model("TrainingSettingsIn", __base__=_Closed, **train_settings_fields())  # type: ignore[call-overload]


class RunIn(Schema):
    base_version: str | None = None
    hyperparameters: TrainingSettingsIn = Field(default_factory=TrainingSettingsIn)  # type: ignore[valid-type]
    since: datetime | None = None
    min_agreement: float = 0.0
    exclude_annotators: list[str] = []
    campaign: str | None = Field(default=None, description="Only this campaign's judgements (its slug).")
    include_flagged: bool = Field(default=False, description="Keep flagged annotators' judgements.")
    exclude_rushed: bool = Field(default=False, description="Leave out votes faster than the campaign's threshold.")
    processes: int = Field(
        default=1,
        ge=1,
        le=settings.DUET_MAX_PROCESSES_PER_RUN,
        description="GPUs per run (processes); more than one waits for a worker with that many GPUs (DUET_GPUS).",
    )


class RunOut(Schema):
    id: int
    status: str
    base_version: str
    model_version: str | None
    progress_step: int
    progress_total: int
    percent: float
    eta_seconds: float | None
    hyperparameters: dict[str, Any]
    processes: int
    dataset_rows: int
    dataset_sha256: str
    heldout_rows: int
    schedule: dict[str, Any]
    latest_metrics: dict[str, Any] | None
    eval_before: dict[str, Any]
    eval_after: dict[str, Any]
    learned: bool | None
    verdict: str
    resumable_from_step: int | None
    error: str
    rq_job_id: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ModelOut(Schema):
    id: int
    name: str
    path: str
    parent: str | None
    trained_by_run: int | None
    is_default: bool
    created_at: datetime
    store_url: str
    content_hash: str


GenerationIn = create_model(  # type: ignore[call-overload]
    "GenerationIn",
    __base__=Schema,
    model_version=(str, ...),
    prompts=(str, GenerationRun.Prompts.ALL),
    since=(datetime | None, None),
    tag=(str, ""),
    pairing=(str | None, None),
    max_prompts=(int | None, Field(default=None, ge=1, le=MAX_PROMPTS_MAX)),
    campaign=(str | None, Field(default=None, description="A campaign's slug: its prompts, its comparisons.")),
    **{name: schema_field(sampling_spec(name)) for name in SAMPLING_FIELDS},
)


class ShardOut(Schema):
    index: int
    status: str
    prompts: int
    prompts_done: int
    worker_name: str
    host: str
    attempts: int
    error: str
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


class GenerationOut(Schema):
    id: int
    status: str
    model_version: str
    round: int
    progress_step: int
    progress_total: int
    percent: float
    completions_created: int
    comparisons_created: int
    error: str
    created_at: datetime
    finished_at: datetime | None
    campaign: str | None = None
    shards: list[ShardOut] = Field(default_factory=list, description="The round's parts, one job each.")


def _version(name: str | None) -> ModelVersion:
    if name is None:
        return services.latest_model_version()
    return get_object_or_404(ModelVersion, name=name)


def run_out(run: TrainingRun) -> dict[str, Any]:
    latest = run.metrics.filter(split=TrainingMetric.Split.TRAIN).order_by("-step").first()
    resumable = run.status in (RunStatus.FAILED, RunStatus.CANCELLED)
    produced = ModelVersion.objects.filter(trained_by=run).first()
    return {
        "id": run.pk,
        "status": run.status,
        "base_version": run.base_version.name,
        "model_version": produced.name if produced else None,
        "progress_step": run.progress_step,
        "progress_total": run.progress_total,
        "percent": run.percent,
        "eta_seconds": run.eta_seconds,
        "hyperparameters": run.hyperparameters,
        "processes": run.processes,
        "dataset_rows": run.dataset_rows,
        "dataset_sha256": run.dataset_sha256,
        "heldout_rows": run.heldout_rows,
        "schedule": run.schedule,
        "latest_metrics": {"step": latest.step, **latest.values} if latest else None,
        "eval_before": run.eval_before,
        "eval_after": run.eval_after,
        "learned": run.learned,
        "verdict": run.verdict,
        "resumable_from_step": selectors.newest_checkpoint_step(run) if resumable else None,
        "error": run.error,
        "rq_job_id": run.rq_job_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def generation_out(run: GenerationRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "status": run.status,
        "model_version": run.model_version.name,
        "round": run.round,
        "progress_step": run.progress_step,
        "progress_total": run.progress_total,
        "percent": run.percent,
        "completions_created": run.completions_created,
        "comparisons_created": run.comparisons_created,
        "error": run.error,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "campaign": run.campaign.slug if run.campaign is not None else None,
        "shards": [
            {
                "index": shard.index,
                "status": shard.status,
                "prompts": len(shard.prompt_ids),
                "prompts_done": shard.prompts_done,
                "worker_name": shard.worker_name,
                "host": shard.host,
                "attempts": shard.attempts,
                "error": shard.error,
                "started_at": shard.started_at,
                "finished_at": shard.finished_at,
                "heartbeat_at": shard.heartbeat_at,
            }
            for shard in selectors.generation_shards(run=run)
        ],
    }


@router.post("/runs", response={202: RunOut, 400: ErrorOut, 404: ErrorOut, 503: ErrorOut})
def run_start(request: HttpRequest, payload: RunIn) -> Any:
    try:
        run = services.training_run_start(
            base_version=_version(payload.base_version),
            hyperparameters=payload.hyperparameters.model_dump(exclude_unset=True),  # type: ignore[attr-defined]
            judgement_filter=JudgementFilter.from_inputs(
                since=payload.since,
                min_agreement=payload.min_agreement,
                exclude=payload.exclude_annotators,
                **quality_options(payload.model_dump(include={"campaign", "include_flagged", "exclude_rushed"})),
            ),
            user=request.user,  # type: ignore[arg-type]
            processes=payload.processes,
        )
    except services.QueueUnavailable as exc:
        return 503, {"detail": str(exc)}
    except (ValueError, TypeError) as exc:
        return 400, {"detail": str(exc)}
    return 202, run_out(run)


@router.get("/runs/{run_id}", response={200: RunOut, 404: ErrorOut})
def run_detail(request: HttpRequest, run_id: RowId) -> Any:
    return 200, run_out(services.training_run_observe(run_id=run_id))


@router.post("/runs/{run_id}/cancel", response={200: RunOut, 404: ErrorOut, 409: ErrorOut})
def run_cancel(request: HttpRequest, run_id: RowId) -> Any:
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        services.training_run_cancel(run=run)
    except services.RunStateError as exc:
        return 409, {"detail": str(exc)}
    return 200, run_out(run)


@router.post("/runs/{run_id}/resume", response={202: RunOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut})
def run_resume(request: HttpRequest, run_id: RowId) -> Any:
    run = get_object_or_404(TrainingRun, pk=run_id)
    return _resumed(lambda: services.training_run_resume(run=run), lambda: run_out(run))


def _resumed(resume: Callable[[], object], out: Callable[[], Any]) -> Any:
    """202 with the run queued again by ``resume``; 409 when its state forbids it, 503 when Redis is down."""
    try:
        resume()
    except services.RunStateError as exc:
        return 409, {"detail": str(exc)}
    except services.QueueUnavailable as exc:
        return 503, {"detail": str(exc)}
    return 202, out()


@router.get("/models", response=list[ModelOut])
def models_list(request: HttpRequest) -> Any:
    return [
        {
            "id": v.pk,
            "name": v.name,
            "path": v.path,
            "parent": v.parent.name if v.parent else None,
            "trained_by_run": v.trained_by_id,
            "is_default": v.is_default,
            "created_at": v.created_at,
            "store_url": v.store_url,
            "content_hash": v.content_hash,
        }
        for v in ModelVersion.objects.select_related("parent").order_by("id")
    ]


def _streamed(respond: Callable[[], Any]) -> Any:
    try:
        return respond()
    except downloads.NothingToDownload as exc:
        return 404, {"detail": str(exc)}


_TAR = {"responses": {200: {"description": "a tar stream", "content": {"application/x-tar": {}}}}}
_JSONL = {"responses": {200: {"description": "JSON lines", "content": {"application/jsonl": {}}}}}


@router.get("/models/{version_id}/download", response={404: ErrorOut}, openapi_extra=_TAR)
def model_download(request: HttpRequest, version_id: RowId) -> Any:
    """The version's weights as a tar, streamed from the artifact store."""
    version = get_object_or_404(ModelVersion, pk=version_id)
    return _streamed(lambda: downloads.version_tar_response(version))


@router.get("/runs/{run_id}/dataset", response={404: ErrorOut}, openapi_extra=_JSONL)
def run_dataset(request: HttpRequest, run_id: RowId) -> Any:
    """The run's frozen training pairs, streamed from the artifact store."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    return _streamed(lambda: downloads.run_file_response(run, "dataset"))


@router.get("/runs/{run_id}/heldout", response={404: ErrorOut}, openapi_extra=_JSONL)
def run_heldout(request: HttpRequest, run_id: RowId) -> Any:
    """The run's held-out pairs, streamed from the artifact store."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    return _streamed(lambda: downloads.run_file_response(run, "heldout"))


@router.post("/generations", response={202: GenerationOut, 400: ErrorOut, 404: ErrorOut, 503: ErrorOut})
def generation_start(request: HttpRequest, payload: GenerationIn) -> Any:  # type: ignore[valid-type]
    options = payload.dict()  # type: ignore[attr-defined]
    version = _version(options.pop("model_version"))
    slug = options.pop("campaign")
    try:
        campaign = annotate_services.campaign_resolve(slug=slug) if slug else None
        run = services.generation_run_start(
            model_version=version, user=request.user, campaign=campaign, **options  # type: ignore[arg-type]
        )
    except services.QueueUnavailable as exc:
        return 503, {"detail": str(exc)}
    except ValueError as exc:
        return 400, {"detail": str(exc)}
    return 202, generation_out(run)


@router.get("/generations/{run_id}", response={200: GenerationOut, 404: ErrorOut})
def generation_detail(request: HttpRequest, run_id: RowId) -> Any:
    return 200, generation_out(services.generation_run_observe(run_id=run_id))


@router.post("/generations/{run_id}/resume", response={202: GenerationOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut})
def generation_resume(request: HttpRequest, run_id: RowId) -> Any:
    run = get_object_or_404(GenerationRun, pk=run_id)
    return _resumed(lambda: services.generation_run_resume(run=run), lambda: generation_out(run))
