"""What the web (pages, API, commands) does to runs: start, cancel, resume, and turn the loop once.

Each start validates everything first, checks that Redis answers, writes the run, and enqueues
its job only after the transaction commits; the worker's side lives in ``training.services.worker``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotate.filters import JudgementFilter, moment_check
from annotate.models import AuditAction, Campaign, Purpose
from annotate.services.audit import audit_record
from config.artifacts import artifact_store
from training.engine_settings import generation_settings_check, training_config_check
from training.models import GenerationRun, GenerationShard, ModelVersion, RunStatus, TrainingRun
from training.services.generation_shards import UNFINISHED, generation_shards_cancel, generation_shards_reap_stale
from training.services.queueing import GPU_QUEUE, enqueue_after_commit, gpu_queue, processes_check, queue_check
from training.services.versions import latest_model_version

# The most prompts a round may be limited to: the column is a 32-bit integer on PostgreSQL.
MAX_PROMPTS_MAX = 2**31 - 1


class RunStateError(ValueError):
    """The run is not in a state that allows this (cancel a finished run, resume a running one)."""


def training_run_start(
    *,
    base_version: ModelVersion,
    hyperparameters: dict[str, Any],
    judgement_filter: JudgementFilter | None = None,
    user: User | None = None,
    processes: int = 1,
) -> TrainingRun:
    """Queue a DPO run on the judgements the filter keeps; the worker freezes them into a dataset first.

    A run on ``processes`` > 1 waits on ``gpu-x{processes}``, which only workers with that many GPUs take.
    """
    from training import jobs

    if judgement_filter is not None and judgement_filter.include_evaluation:
        raise ValueError("evaluation judgements measure a model and are never trained on")
    hyperparameters = training_config_check(hyperparameters)
    queue = gpu_queue(processes_check(processes))
    queue_check(name=queue)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            base_version=base_version,
            hyperparameters=hyperparameters,
            dataset_filters=(judgement_filter or JudgementFilter()).to_json(),
            created_by=user,
            processes=processes,
        )
        # The store's URI, not a folder: the worker that takes the run works in a folder of its own host.
        run.out_dir = artifact_store().uri(run.store_key)
        run.save(update_fields=["out_dir"])
        audit_record(action=AuditAction.TRAINING_START, target=run)
        enqueue_after_commit(run=run, job=jobs.train, queue=queue)
    return run


def training_run_cancel(*, run: TrainingRun | GenerationRun) -> None:
    """Ask the worker to stop between steps; a queued run is cancelled at once."""
    if run.is_finished:
        raise RunStateError(f"{run} has already {run.status}")
    with transaction.atomic():
        type(run).objects.filter(pk=run.pk).update(cancel_requested=True)
        type(run).objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), error="cancelled before it started"
        )
        cancelled = AuditAction.GENERATION_CANCEL if isinstance(run, GenerationRun) else AuditAction.TRAINING_CANCEL
        audit_record(action=cancelled, target=run)
        if isinstance(run, GenerationRun):
            generation_shards_cancel(run=run)
    run.refresh_from_db()


def training_run_resume(*, run: TrainingRun) -> TrainingRun:
    """Queue a failed or cancelled run again; it continues from its newest checkpoint, or from step 0 without one."""
    from training import jobs

    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise RunStateError(f"only a failed or cancelled run can be resumed; {run} is {run.status}")
    queue = gpu_queue(run.processes)
    queue_check(name=queue)
    with transaction.atomic():
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.QUEUED,
            cancel_requested=False,
            error="",
            traceback="",
            finished_at=None,
            resumed_count=run.resumed_count + 1,
        )
        run.refresh_from_db()
        audit_record(action=AuditAction.TRAINING_RESUME, target=run)
        enqueue_after_commit(run=run, job=jobs.train, queue=queue)
    return run


def generation_run_start(
    *,
    model_version: ModelVersion,
    prompts: str = GenerationRun.Prompts.ALL,
    since: Any = None,
    tag: str = "",
    pairing: str | None = None,
    n: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    max_new_tokens: int | None = None,
    seed: int | None = None,
    max_prompts: int | None = None,
    purpose: str = Purpose.TRAINING,
    user: User | None = None,
    after_training: TrainingRun | None = None,
    campaign: Campaign | None = None,
) -> GenerationRun:
    """Queue a generation round; its completions become comparisons in the annotators' queue.

    With a ``campaign`` the round answers that campaign's prompts and its comparisons land there;
    without one it answers every prompt, into the default campaign.

    Sampling settings left at ``None`` take ``GenerateConfig``'s defaults. ``pairing`` defaults to
    the parent version on the same prompt when there is a parent, else two samples of this version
    (``n`` then defaults to 2).
    """
    from training import jobs

    has_parent = model_version.parent_id is not None or after_training is not None
    pairing = pairing or (GenerationRun.Pairing.PARENT if has_parent else GenerationRun.Pairing.SELF)
    if n is None:
        n = 2 if pairing == GenerationRun.Pairing.SELF else 1
    given = {"n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed}
    chosen = generation_settings_check({name: value for name, value in given.items() if value is not None})
    _generation_choice_check(
        prompts=prompts, since=since, tag=tag, pairing=pairing, n=chosen["n"], max_prompts=max_prompts,
        has_parent=has_parent, version=model_version, purpose=purpose,
    )
    if after_training is None:
        queue_check(name=GPU_QUEUE)
    with transaction.atomic():
        run = GenerationRun.objects.create(
            model_version=model_version, prompts=prompts, since=since, tag=tag, pairing=pairing,
            max_prompts=max_prompts, purpose=purpose, round=model_version.depth, created_by=user,
            after_training=after_training, campaign=campaign,
            **chosen,
        )
        audit_record(action=AuditAction.GENERATION_START, target=run)
        if after_training is None:
            enqueue_after_commit(run=run, job=jobs.generate, queue=GPU_QUEUE)
    return run


def _generation_choice_check(
    *,
    prompts: str,
    since: Any,
    tag: str,
    pairing: str,
    n: int,
    max_prompts: int | None,
    has_parent: bool,
    version: ModelVersion,
    purpose: str,
) -> None:
    if purpose not in Purpose.values:
        raise ValueError(f"purpose must be one of {', '.join(Purpose.values)}")
    if max_prompts is not None and not 1 <= max_prompts <= MAX_PROMPTS_MAX:
        raise ValueError(f"max_prompts must be in [1, {MAX_PROMPTS_MAX}], got {max_prompts}")
    moment_check(since, field="since")
    if purpose != Purpose.EVALUATION and prompts == GenerationRun.Prompts.TAG and tag == settings.DUET_EVAL_TAG:
        raise ValueError(f"prompts tagged {tag!r} are kept for evaluation rounds: a training round cannot use them")
    if purpose == Purpose.EVALUATION and pairing != GenerationRun.Pairing.PARENT:
        raise ValueError("an evaluation round compares a version with its parent: it needs pairing against the parent")
    if prompts not in GenerationRun.Prompts.values:
        raise ValueError(f"prompts must be one of {', '.join(GenerationRun.Prompts.values)}")
    if pairing not in GenerationRun.Pairing.values:
        raise ValueError(f"pairing must be one of {', '.join(GenerationRun.Pairing.values)}")
    if pairing == GenerationRun.Pairing.SELF and n < 2:
        raise ValueError("pairing two samples of one version needs n of at least 2")
    if pairing == GenerationRun.Pairing.PARENT and not has_parent:
        raise ValueError(f"{version.name} has no parent version: pair two of its own samples instead")
    if prompts == GenerationRun.Prompts.TAG and not tag:
        raise ValueError("choosing prompts by tag needs a tag")
    if prompts == GenerationRun.Prompts.NEW and since is None:
        raise ValueError("choosing new prompts needs a date")


def next_round_start(
    *,
    base_version: ModelVersion | None = None,
    hyperparameters: dict[str, Any] | None = None,
    generation: dict[str, Any] | None = None,
    user: User | None = None,
    campaign: Campaign | None = None,
    include_flagged: bool = False,
    exclude_rushed: bool = False,
    processes: int = 1,
) -> tuple[TrainingRun, GenerationRun]:
    """Train on the judgements since the last run, then generate the next round with the new version.

    ``include_flagged``, ``exclude_rushed`` and ``processes`` are the training run's, as in any run.

    The generation run waits, queued, for its training run; the worker enqueues it with the new
    version when training succeeds, and cancels it when training does not. With a ``campaign`` the
    round stays in it: training takes that campaign's judgements since its last run, and the new
    comparisons land there.
    """
    base = base_version or latest_model_version()
    finished = TrainingRun.objects.filter(status=RunStatus.SUCCEEDED)
    if campaign is not None:
        finished = finished.filter(dataset_filters__campaign=campaign.slug)
    last = finished.order_by("-created_at").first()
    options = {"n": 1, **(generation or {})}
    since = last.created_at if last is not None else None
    with transaction.atomic():
        train_run = training_run_start(
            base_version=base,
            hyperparameters=hyperparameters or {},
            judgement_filter=JudgementFilter(
                since=since,
                campaign=campaign.slug if campaign is not None else None,
                include_flagged=include_flagged,
                exclude_rushed=exclude_rushed,
            ),
            user=user,
            processes=processes,
        )
        gen_run = generation_run_start(
            model_version=base,
            pairing=GenerationRun.Pairing.PARENT,
            user=user,
            after_training=train_run,
            campaign=campaign,
            **options,
        )
    return train_run, gen_run


# What a held-back round kept of its settings, for the round started anyway in its place.
_ROUND_SETTINGS = ("prompts", "since", "tag", "n", "temperature", "top_p", "max_new_tokens", "seed", "max_prompts")


def generation_run_start_anyway(*, run: TrainingRun, user: User | None = None) -> GenerationRun:
    """Generate the round a run that did not learn held back: its version against its parent.

    It takes the settings of the chained round that was cancelled, where there was one, else the next
    round's (one sample per prompt against the parent); either way it keeps the campaign of the run's data.
    """
    if run.status != RunStatus.SUCCEEDED or run.learned is not False:
        raise RunStateError(f"only a finished run that did not learn holds its round back; {run} did not")
    version = ModelVersion.objects.filter(trained_by=run).first()
    if version is None:
        raise RunStateError(f"{run} registered no model version")
    if GenerationRun.objects.filter(model_version=version, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).exists():
        raise RunStateError(f"a round of {version.name} is already queued or running")
    held = run.next_generation.filter(status=RunStatus.CANCELLED).order_by("-id").first()
    options: dict[str, Any] = {"n": 1} if held is None else {name: getattr(held, name) for name in _ROUND_SETTINGS}
    return generation_run_start(
        model_version=version, pairing=GenerationRun.Pairing.PARENT, user=user, campaign=_data_campaign(run), **options
    )


def _data_campaign(run: TrainingRun) -> Campaign | None:
    """The campaign whose judgements ``run`` trained on, or None when it took every campaign's (or it is gone)."""
    slug = (run.dataset_filters or {}).get("campaign")
    return Campaign.objects.filter(slug=slug).first() if slug else None


def generation_run_resume(*, run: GenerationRun) -> GenerationRun:
    """Queue a failed or cancelled round again; it answers only the prompts its earlier attempts did not reach.

    What the round stored before it stopped stays: its comparisons are in the queue already.
    """
    from training import jobs

    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise RunStateError(f"only a failed or cancelled round can be resumed; {run} is {run.status}")
    if run.after_training_id is not None and run.started_at is None:
        raise RunStateError(f"{run} waited for training run {run.after_training_id}, which made no version to sample")
    queue_check(name=GPU_QUEUE)
    with transaction.atomic():
        GenerationRun.objects.filter(pk=run.pk).update(
            status=RunStatus.QUEUED, cancel_requested=False, error="", traceback="", finished_at=None
        )
        run.refresh_from_db()
        enqueue_after_commit(run=run, job=jobs.generate, queue=GPU_QUEUE)
    return run


# How often a worker (busy or idle) looks for runs whose worker died: with the heartbeat timeout
# (DUET_HEARTBEAT_TIMEOUT, 45 s by default) a run is failed within a minute of its worker's death.
REAP_EVERY_SECONDS = 10


def runs_reap_stale() -> int:
    """Mark running runs whose worker stopped sending heartbeats as failed, and queue again the generation
    shards whose worker did (``generation_shards_reap_stale``); return how many.

    The one home of the staleness rule: every worker calls it every ``REAP_EVERY_SECONDS`` and
    reading a run (its page, the API, a command's ``--wait``) calls it first. It reads before it
    writes, so the pages that poll it take no write lock while every worker is alive.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.DUET_HEARTBEAT_TIMEOUT)
    stale_after = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    reaped = generation_shards_reap_stale(cutoff=cutoff)
    planned = GenerationShard.objects.filter(status__in=UNFINISHED).values("run_id")
    for stale in (
        TrainingRun.objects.filter(stale_after, status=RunStatus.RUNNING),
        # A planned round lives through its shards (reaped above); its own beat counts while it is planned.
        GenerationRun.objects.filter(stale_after, status=RunStatus.RUNNING).exclude(pk__in=planned),
    ):
        if not stale.exists():
            continue
        reaped += stale.update(
            status=RunStatus.FAILED,
            finished_at=now,
            error=f"the worker stopped answering (no heartbeat for {settings.DUET_HEARTBEAT_TIMEOUT:g} s): "
            "it was killed, ran out of memory or lost its machine; resume the run to continue from its checkpoint",
        )
    return reaped


def training_run_observe(*, run_id: int) -> TrainingRun:
    """A training run as it stands, after failing any run whose worker has stopped beating."""
    runs_reap_stale()
    return TrainingRun.objects.select_related("base_version").get(pk=run_id)


def generation_run_observe(*, run_id: int) -> GenerationRun:
    """A generation run as it stands, after failing any run whose worker has stopped beating."""
    runs_reap_stale()
    return GenerationRun.objects.select_related("model_version").get(pk=run_id)
