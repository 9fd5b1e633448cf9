"""Every write of the training app: model versions, training and generation runs, and their jobs.

A run is created here, enqueued on RQ after its transaction commits, and executed by a worker
through ``training.jobs``, which calls back into the ``*_execute`` functions below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate import services as annotate_services
from annotate.models import Judgement
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingMetric, TrainingRun

LOG_TAIL_CHARS = 8000


class QueueUnavailable(RuntimeError):
    """Redis cannot be reached, so a run cannot be started; nothing was created."""


class RunStateError(ValueError):
    """The run is not in a state that allows this (cancel a finished run, resume a running one)."""


# Model versions -------------------------------------------------------------------------


def model_version_register(*, name: str, path: str, parent: ModelVersion | None = None) -> ModelVersion:
    """Add a model version by name; ``path`` must resolve (built-in name, local folder or hub id)."""
    from dpo_engine.models import resolve_model_path

    name = name.strip()
    if not name:
        raise ValueError("a model version needs a name")
    if ModelVersion.objects.filter(name=name).exists():
        raise ValueError(f"a model version named {name!r} exists already")
    resolve_model_path(path)
    return ModelVersion.objects.create(name=name, path=path, parent=parent)


def default_model_version() -> ModelVersion:
    """The built-in SmolLM2-135M-Instruct version (made again if someone deleted it)."""
    from dpo_engine.config import DEFAULT_MODEL

    version = ModelVersion.objects.filter(is_default=True).first()
    if version is None:
        version, _ = ModelVersion.objects.get_or_create(
            name=DEFAULT_MODEL, defaults={"path": DEFAULT_MODEL, "is_default": True}
        )
    return version


# Queue ----------------------------------------------------------------------------------


def _check_queue(name: str) -> None:
    import django_rq
    import redis

    try:
        django_rq.get_connection(name).ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise QueueUnavailable(
            f"Redis at {settings.REDIS_URL} cannot be reached ({exc}); start it (scripts/start does) and try again"
        ) from exc


def _enqueue_after_commit(run: TrainingRun | GenerationRun, job: Callable[..., Any], queue: str) -> None:
    """Enqueue once the run's row is committed; if Redis fails then, remove the run and say why."""

    def enqueue() -> None:
        import django_rq
        import redis

        try:
            rq_job = django_rq.get_queue(queue).enqueue(
                job, run.pk, job_timeout=settings.DUET_JOB_TIMEOUT, failure_ttl=7 * 24 * 3600
            )
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            type(run).objects.filter(pk=run.pk).delete()
            raise QueueUnavailable(
                f"Redis at {settings.REDIS_URL} cannot be reached ({exc}); nothing was started"
            ) from exc
        type(run).objects.filter(pk=run.pk).update(rq_job_id=rq_job.id)
        run.rq_job_id = rq_job.id

    transaction.on_commit(enqueue, robust=False)


# Training runs --------------------------------------------------------------------------


def training_config_check(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Validate hyper-parameters as the engine will see them; return them JSON-ready."""
    from dpo_engine.config import TrainConfig

    allowed = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "eval_data", "model", "out", "resume"}
    unknown = sorted(set(hyperparameters) - allowed)
    if unknown:
        raise ValueError(f"unknown training option {', '.join(unknown)}")
    TrainConfig(data="-", **hyperparameters).validate()
    return json.loads(json.dumps(hyperparameters))


def training_run_start(
    *,
    base_version: ModelVersion,
    hyperparameters: dict[str, Any],
    since: datetime | None = None,
    min_agreement: float = 0.0,
    exclude_annotators: list[str] | None = None,
    user: User | None = None,
) -> TrainingRun:
    """Queue a DPO run on the judgements (filtered); the worker freezes them into a dataset file first."""
    from training import jobs

    hyperparameters = training_config_check(hyperparameters)
    _check_queue("gpu")
    filters = {
        "since": since.isoformat() if since else None,
        "min_agreement": min_agreement,
        "exclude_annotators": exclude_annotators or [],
    }
    with transaction.atomic():
        run = TrainingRun.objects.create(
            base_version=base_version, hyperparameters=hyperparameters, dataset_filters=filters, created_by=user
        )
        run.out_dir = str(Path(settings.DUET_RUNS_DIR) / f"train-{run.pk}")
        run.save(update_fields=["out_dir"])
        _enqueue_after_commit(run, jobs.train, "gpu")
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
    run.refresh_from_db()


def training_run_resume(*, run: TrainingRun) -> TrainingRun:
    """Queue a failed or cancelled run again; it continues from its newest checkpoint."""
    from training import jobs

    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise RunStateError(f"only a failed or cancelled run can be resumed; {run} is {run.status}")
    _check_queue("gpu")
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
        _enqueue_after_commit(run, jobs.train, "gpu")
    return run


def runs_reap_stale() -> int:
    """Mark running runs whose worker stopped sending heartbeats as failed; return how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.DUET_HEARTBEAT_TIMEOUT)
    now = timezone.now()
    reaped = 0
    for model in (TrainingRun, GenerationRun):
        stale = model.objects.filter(status=RunStatus.RUNNING).filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        )
        reaped += stale.update(
            status=RunStatus.FAILED,
            finished_at=now,
            error=f"the worker stopped answering (no heartbeat for {settings.DUET_HEARTBEAT_TIMEOUT} s): "
            "it was killed, ran out of memory or lost its machine; resume the run to continue from its checkpoint",
        )
    return reaped


@contextmanager
def _heartbeat(model: type[TrainingRun] | type[GenerationRun], pk: int) -> Iterator[None]:
    """Beat every few seconds from a thread, so a long step never looks like a dead worker."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(settings.DUET_HEARTBEAT_SECONDS):
            model.objects.filter(pk=pk, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())
        close_old_connections()

    thread = threading.Thread(target=beat, name=f"heartbeat-{model.__name__}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _claim(model: type[TrainingRun] | type[GenerationRun], pk: int) -> bool:
    """Move a queued run to running; False if it was cancelled (or taken) meanwhile."""
    now = timezone.now()
    return bool(
        model.objects.filter(pk=pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
        )
    )


def _finish(run: TrainingRun | GenerationRun, status: str, **fields: Any) -> None:
    type(run).objects.filter(pk=run.pk).update(status=status, finished_at=timezone.now(), **fields)


def _append_log(run: TrainingRun | GenerationRun, line: str) -> None:
    run.log_tail = (run.log_tail + line.rstrip() + "\n")[-LOG_TAIL_CHARS:]
    type(run).objects.filter(pk=run.pk).update(log_tail=run.log_tail)


def _freeze_dataset(run: TrainingRun) -> None:
    """Export the run's judgements once into its folder and record the file, hash, rows and judgements."""
    filters = run.dataset_filters
    since = datetime.fromisoformat(filters["since"]) if filters.get("since") else None
    path = Path(run.out_dir) / "dataset.jsonl"
    result = annotate_services.export_preferences(
        path=path,
        fmt="jsonl",
        conversational=True,
        min_agreement=filters.get("min_agreement", 0.0),
        since=since,
        exclude_annotators=filters.get("exclude_annotators", []),
    )
    comparison_ids = [json.loads(line)["comparison_id"] for line in path.open(encoding="utf-8")]
    judgements = Judgement.objects.filter(comparison_id__in=comparison_ids)
    if since is not None:
        judgements = judgements.filter(created_at__gte=since)
    if excluded := filters.get("exclude_annotators"):
        judgements = judgements.exclude(annotator__username__in=excluded)
    run.dataset_path = str(path)
    run.dataset_rows = result.rows
    run.dataset_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    run.save(update_fields=["dataset_path", "dataset_rows", "dataset_sha256"])
    run.judgements.set(judgements)


def _small_data_defaults(hyperparameters: dict[str, Any], rows: int) -> tuple[dict[str, Any], str]:
    """The paper's batch of 64 and 150 warm-up steps assume thousands of pairs; scale them to a small set.

    Returns the settings actually used and a note saying what was scaled (shown on the run page).
    """
    from dpo_engine.config import TrainConfig

    used = dict(hyperparameters)
    defaults = TrainConfig(data="-")
    batch = used.get("batch_size", defaults.batch_size) * used.get("grad_accum", defaults.grad_accum)
    epochs = used.get("epochs", defaults.epochs)
    steps = max(1, rows // batch) * epochs
    warmup = used.get("warmup_steps", defaults.warmup_steps)
    notes = []
    if warmup >= steps:
        used["warmup_steps"] = max(1, steps // 10)
        notes.append(f"warm-up scaled from {warmup} to {used['warmup_steps']} steps (10% of {steps})")
    return used, "; ".join(notes)


def training_run_execute(*, run_id: int) -> None:
    """The worker's side of a training run: freeze the data, train, register the new model version."""
    from dpo_engine import TrainConfig, train

    if not _claim(TrainingRun, run_id):
        return
    run = TrainingRun.objects.select_related("base_version").get(pk=run_id)
    try:
        with _heartbeat(TrainingRun, run_id):
            if not run.dataset_path or not Path(run.dataset_path).exists():
                _freeze_dataset(run)
            if run.dataset_rows == 0:
                raise ValueError("there are no decided comparisons to train on: judge some pairs first")
            used, note = _small_data_defaults(run.hyperparameters, run.dataset_rows)
            if note:
                _append_log(run, note)
            config = TrainConfig(
                data=run.dataset_path,
                model=run.base_version.path,
                out=run.out_dir,
                resume=(Path(run.out_dir) / "checkpoints").exists(),
                **used,
            )
            config.validate()
            result = train(config, callbacks=_training_callbacks(run))
        if result.stopped:
            _finish(run, RunStatus.CANCELLED, error="cancelled from the page")
            _follow_up_generations(run, None)
            return
        with transaction.atomic():
            version = ModelVersion.objects.create(
                name=_child_name(run.base_version, run),
                path=str(result.final_model_dir),
                parent=run.base_version,
                trained_by=run,
            )
            _finish(
                run,
                RunStatus.SUCCEEDED,
                eval_before=result.eval_before,
                eval_after=result.eval_after,
                progress_step=result.steps,
            )
            _follow_up_generations(run, version)
        _append_log(run, f"registered model version {version.name}")
    except Exception as exc:
        _finish(run, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        _follow_up_generations(run, None)
        raise


def _child_name(base: ModelVersion, run: TrainingRun) -> str:
    root = base.name.split("+dpo")[0]
    return f"{root}+dpo{run.pk}"


def _training_callbacks(run: TrainingRun) -> Any:
    from dpo_engine import TrainCallbacks

    def on_metrics(metrics: dict[str, Any]) -> None:
        clean = {k: v for k, v in metrics.items() if isinstance(v, int | float) and v == v}
        TrainingMetric.objects.update_or_create(run=run, step=int(metrics["step"]), defaults={"values": clean})

    def on_progress(step: int, total: int, eta: float | None) -> None:
        TrainingRun.objects.filter(pk=run.pk).update(
            progress_step=step, progress_total=total, eta_seconds=eta, heartbeat_at=timezone.now()
        )

    def should_stop() -> bool:
        return TrainingRun.objects.filter(pk=run.pk, cancel_requested=True).exists()

    return TrainCallbacks(
        on_metrics=on_metrics,
        on_progress=on_progress,
        should_stop=should_stop,
        on_log=lambda line: _append_log(run, line),
    )


# Generation runs ------------------------------------------------------------------------

GENERATION_CHUNK = 16


def _version_depth(version: ModelVersion) -> int:
    depth = 1
    while version.parent_id is not None:
        version = ModelVersion.objects.get(pk=version.parent_id)
        depth += 1
    return depth


def generation_run_start(
    *,
    model_version: ModelVersion,
    prompts: str = GenerationRun.Prompts.ALL,
    since: datetime | None = None,
    tag: str = "",
    pairing: str | None = None,
    n: int | None = None,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_new_tokens: int = 256,
    seed: int = 0,
    max_prompts: int | None = None,
    user: User | None = None,
    after_training: TrainingRun | None = None,
) -> GenerationRun:
    """Queue a generation round; its completions become comparisons in the annotators' queue.

    ``pairing`` defaults to the parent version on the same prompt when there is a parent, else two
    samples of this version (``n`` then defaults to 2).
    """
    from training import jobs

    has_parent = model_version.parent_id is not None or after_training is not None
    pairing = pairing or (GenerationRun.Pairing.PARENT if has_parent else GenerationRun.Pairing.SELF)
    n = n or (2 if pairing == GenerationRun.Pairing.SELF else 1)
    if prompts not in GenerationRun.Prompts.values:
        raise ValueError(f"prompts must be one of {', '.join(GenerationRun.Prompts.values)}")
    if pairing not in GenerationRun.Pairing.values:
        raise ValueError(f"pairing must be one of {', '.join(GenerationRun.Pairing.values)}")
    if pairing == GenerationRun.Pairing.SELF and n < 2:
        raise ValueError("pairing two samples of one version needs n of at least 2")
    if pairing == GenerationRun.Pairing.PARENT and model_version.parent_id is None and after_training is None:
        raise ValueError(f"{model_version.name} has no parent version: pair two of its own samples instead")
    if prompts == GenerationRun.Prompts.TAG and not tag:
        raise ValueError("choosing prompts by tag needs a tag")
    if prompts == GenerationRun.Prompts.NEW and since is None:
        raise ValueError("choosing new prompts needs a date")
    if not (0 <= temperature <= 5 and 0 < top_p <= 1 and 1 <= max_new_tokens <= 8192 and 1 <= n <= 16):
        raise ValueError("sampling settings out of range: 0 ≤ temperature ≤ 5, 0 < top-p ≤ 1, 1 ≤ n ≤ 16")
    if after_training is None:
        _check_queue("gpu")
    with transaction.atomic():
        run = GenerationRun.objects.create(
            model_version=model_version,
            prompts=prompts,
            since=since,
            tag=tag,
            pairing=pairing,
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=seed,
            max_prompts=max_prompts,
            round=_version_depth(model_version),
            created_by=user,
            after_training=after_training,
        )
        if after_training is None:
            _enqueue_after_commit(run, jobs.generate, "gpu")
    return run


def _selected_prompts(run: GenerationRun) -> list[Any]:
    from annotate.models import Comparison, Prompt

    prompts = Prompt.objects.order_by("id")
    if run.prompts == GenerationRun.Prompts.NEW and run.since is not None:
        prompts = prompts.filter(created_at__gte=run.since)
    if run.prompts == GenerationRun.Prompts.UNPAIRED:
        open_ids = Comparison.objects.filter(judgement_count__lt=F("target_judgements")).values("prompt_id")
        prompts = prompts.exclude(id__in=open_ids)
    selected = list(prompts)
    if run.prompts == GenerationRun.Prompts.TAG:
        # JSON containment is not portable to SQLite, and tags are short lists: filter here.
        selected = [p for p in selected if run.tag in (p.tags or [])]
    return selected[: run.max_prompts] if run.max_prompts else selected


def _sample(
    run: GenerationRun, version: ModelVersion, prompts: list[Any], n: int, progress: Callable[[int], None]
) -> dict[int, list[annotate_services.NewCompletion]]:
    """``n`` completions of ``version`` per prompt, in chunks so that progress and cancel are seen."""
    from dpo_engine.generate import generate
    from dpo_engine.models import load_model, load_tokenizer

    model = load_model(version.path)
    tokenizer = load_tokenizer(version.path)
    out: dict[int, list[annotate_services.NewCompletion]] = {}
    for start in range(0, len(prompts), GENERATION_CHUNK):
        if GenerationRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
            raise _Cancelled
        chunk = prompts[start : start + GENERATION_CHUNK]
        results = generate(
            model,
            tokenizer,
            [p.messages for p in chunk],
            n=n,
            temperature=run.temperature,
            top_p=run.top_p,
            max_new_tokens=run.max_new_tokens,
            seed=run.seed + start,
        )
        for prompt, samples in zip(chunk, results, strict=True):
            out[prompt.id] = [
                annotate_services.NewCompletion(
                    prompt_id=prompt.id,
                    text=sample.text,
                    model_name=version.name,
                    generation={
                        "model_version": version.name,
                        "model_version_id": version.pk,
                        "generation_run": run.pk,
                        "round": run.round,
                        "sample": index,
                        "temperature": run.temperature,
                        "top_p": run.top_p,
                        "max_new_tokens": run.max_new_tokens,
                        "seed": run.seed,
                        "completion_tokens": sample.completion_tokens,
                        "finish_reason": sample.finish_reason,
                    },
                )
                for index, sample in enumerate(samples)
            ]
        progress(len(chunk))
    return out


class _Cancelled(Exception):
    pass


def generation_run_execute(*, run_id: int) -> None:
    """The worker's side of a generation round: sample, store with lineage, open comparisons."""
    from annotate.models import Completion

    if not _claim(GenerationRun, run_id):
        return
    run = GenerationRun.objects.select_related("model_version__parent").get(pk=run_id)
    version = run.model_version
    try:
        with _heartbeat(GenerationRun, run_id):
            prompts = _selected_prompts(run)
            if not prompts:
                raise ValueError("no prompts match this round's selection")
            parent = version.parent if run.pairing == GenerationRun.Pairing.PARENT else None
            existing: dict[int, Completion] = {}
            if parent is not None:
                for completion in Completion.objects.filter(
                    model_name=parent.name, prompt_id__in=[p.id for p in prompts]
                ).order_by("id"):
                    existing.setdefault(completion.prompt_id, completion)
            missing_parent = [p for p in prompts if parent is not None and p.id not in existing]
            total = len(prompts) + len(missing_parent)
            done = 0

            def progress(count: int) -> None:
                nonlocal done
                done += count
                GenerationRun.objects.filter(pk=run.pk).update(
                    progress_step=done, progress_total=total, heartbeat_at=timezone.now()
                )

            progress(0)
            new = _sample(run, version, prompts, run.n, progress)
            if parent is not None and missing_parent:
                for prompt_id, samples in _sample(run, parent, missing_parent, 1, progress).items():
                    existing[prompt_id] = annotate_services.completions_add(completions=samples)[0]
            pairs: list[tuple[Completion, Completion]] = []
            created_completions = 0
            for prompt in prompts:
                stored = annotate_services.completions_add(completions=new[prompt.id])
                created_completions += len(stored)
                if parent is not None:
                    pairs.extend((existing[prompt.id], c) for c in stored)
                else:
                    pairs.extend(zip(stored[0::2], stored[1::2], strict=False))
            comparisons = annotate_services.comparisons_create(pairs=pairs, source=f"generation-{run.pk}")
        _finish(
            run,
            RunStatus.SUCCEEDED,
            completions_created=created_completions,
            comparisons_created=comparisons,
            progress_step=total,
            progress_total=total,
        )
    except _Cancelled:
        _finish(run, RunStatus.CANCELLED, error="cancelled from the page")
    except Exception as exc:
        _finish(run, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        raise


# The loop -------------------------------------------------------------------------------


def next_round_start(
    *,
    base_version: ModelVersion | None = None,
    hyperparameters: dict[str, Any] | None = None,
    generation: dict[str, Any] | None = None,
    user: User | None = None,
) -> tuple[TrainingRun, GenerationRun]:
    """Train on the judgements since the last run, then generate the next round with the new version.

    The generation run waits, queued, for its training run; the worker enqueues it with the new
    version when training succeeds, and cancels it when training does not.
    """
    base = base_version or latest_model_version()
    last = TrainingRun.objects.filter(status=RunStatus.SUCCEEDED).order_by("-created_at").first()
    options = dict(generation or {})
    with transaction.atomic():
        train_run = training_run_start(
            base_version=base,
            hyperparameters=hyperparameters or {},
            since=last.created_at if last is not None else None,
            user=user,
        )
        gen_run = generation_run_start(
            model_version=base,
            pairing=GenerationRun.Pairing.PARENT,
            n=options.pop("n", 1),
            user=user,
            after_training=train_run,
            **options,
        )
    return train_run, gen_run


def latest_model_version() -> ModelVersion:
    """The newest version made by training, else the default."""
    return ModelVersion.objects.exclude(trained_by=None).order_by("-id").first() or default_model_version()


def _follow_up_generations(run: TrainingRun, version: ModelVersion | None) -> None:
    """Start (or, without a new version, cancel) the generation rounds chained to ``run``."""
    from training import jobs

    waiting = GenerationRun.objects.filter(after_training=run, status=RunStatus.QUEUED)
    if version is None:
        waiting.update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), error=f"its training run {run.pk} did not finish"
        )
        return
    for gen_run in waiting:
        gen_run.model_version = version
        gen_run.round = _version_depth(version)
        gen_run.save(update_fields=["model_version", "round"])
        _enqueue_after_commit(gen_run, jobs.generate, "gpu")


def training_run_observe(*, run_id: int) -> TrainingRun:
    """A training run as it stands, after failing any run whose worker has stopped beating."""
    runs_reap_stale()
    return TrainingRun.objects.select_related("base_version").get(pk=run_id)


def generation_run_observe(*, run_id: int) -> GenerationRun:
    """A generation run as it stands, after failing any run whose worker has stopped beating."""
    runs_reap_stale()
    return GenerationRun.objects.select_related("model_version").get(pk=run_id)
