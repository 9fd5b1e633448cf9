"""Reads for the training app's staff pages: runs, one run with its metric curves, model versions."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Prefetch
from django.shortcuts import get_object_or_404

from annotate.filters import JudgementFilter
from annotate.models import Comparison, Completion, Prompt, Purpose
from annotate.selectors import preference_decisions
from config.artifacts import ArtifactError, artifact_store
from training.charts import Series, legend, line_chart
from training.engine_settings import training_config_check
from training.evaluation import HELDOUT_MIN_PAIRS, heldout_size
from training.models import GenerationRun, GenerationShard, ModelVersion, RunStatus, TrainingMetric, TrainingRun

RUNS_SHOWN = 100


@dataclass(frozen=True)
class RunsOverview:
    training: list[TrainingRun]
    generation: list[GenerationRun]
    active: int


def runs_overview(*, limit: int = RUNS_SHOWN) -> RunsOverview:
    """The newest training and generation runs, with what their rows show."""
    active = (RunStatus.QUEUED, RunStatus.RUNNING)
    training = list(
        TrainingRun.objects.select_related("base_version", "produced_version", "created_by").order_by("-id")[:limit]
    )
    generation = list(
        GenerationRun.objects.select_related("model_version", "after_training", "created_by").order_by("-id")[:limit]
    )
    return RunsOverview(
        training=training,
        generation=generation,
        active=TrainingRun.objects.filter(status__in=active).count()
        + GenerationRun.objects.filter(status__in=active).count(),
    )


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    svg: str
    legend: list[tuple[str, str]]


@dataclass(frozen=True)
class Setting:
    name: str
    value: Any
    default: Any
    help: str
    auto: bool = False  # left to the engine, which resolved ``value`` against the data

    @property
    def changed(self) -> bool:
        return not self.auto and bool(self.value != self.default)


TRAIN, EVAL = TrainingMetric.Split.TRAIN, TrainingMetric.Split.EVAL
# Which metrics each chart on the run page draws, as (split, TRL metric name, label), with a fixed y range
# where one is natural; held-out evaluations sit beside the training steps on the same step axis.
CHARTS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...], tuple[float, float] | None], ...] = (
    ("loss", "Loss", ((TRAIN, "loss", "training"), (EVAL, "eval/loss", "held-out")), None),
    (
        "accuracy",
        "Reward accuracy",
        ((TRAIN, "rewards/accuracies", "training"), (EVAL, "eval/rewards/accuracies", "held-out")),
        (0.0, 1.0),
    ),
    ("margin", "Reward margin", ((TRAIN, "rewards/margins", "training"), (EVAL, "eval/rewards/margins", "held-out")),
     None),
    (
        "rewards",
        "Chosen and rejected rewards",
        ((TRAIN, "rewards/chosen", "chosen"), (TRAIN, "rewards/rejected", "rejected")),
        None,
    ),
)
# The before/after table of the run page: held-out metric, label, whether it is a share.
EVAL_ROWS = (
    ("eval/rewards/accuracies", "Held-out accuracy", True),
    ("eval/rewards/margins", "Held-out margin", False),
    ("eval/loss", "Held-out loss", False),
)
LATEST_SHOWN = (
    "loss",
    "rewards/accuracies",
    "rewards/margins",
    "rewards/chosen",
    "rewards/rejected",
    "grad_norm",
    "learning_rate",
    "tokens_per_second",
    "epoch",
)


@dataclass(frozen=True)
class EvalRow:
    label: str
    before: float | None
    after: float | None
    share: bool


@dataclass(frozen=True)
class TrainingRunDetail:
    run: TrainingRun
    produced_version: ModelVersion | None
    charts: list[Chart]
    latest: list[tuple[str, float]]
    metric_rows: int
    judgements: int
    settings: list[Setting]
    next_generation: list[GenerationRun] = field(default_factory=list)
    eval_rows: list[EvalRow] = field(default_factory=list)
    resumable_from_step: int | None = None
    # Rounds of the version it produced: a run that did not learn offers one only while there is none.
    produced_rounds: list[GenerationRun] = field(default_factory=list)

    @property
    def heldout_min_pairs(self) -> int:
        return HELDOUT_MIN_PAIRS

    @property
    def offers_round_anyway(self) -> bool:
        held_back = self.run.learned is False and self.produced_version is not None
        return held_back and not any(r.status != RunStatus.CANCELLED for r in self.produced_rounds)


def metric_charts(metrics: list[TrainingMetric]) -> list[Chart]:
    """The run page's four curves from its stored metric rows, one point per logged step or evaluation."""
    charts = []
    for key, title, names, y_range in CHARTS:
        series = [
            Series(
                label,
                [
                    (m.step, m.values[name])
                    for m in metrics
                    if m.split == split and isinstance(m.values.get(name), int | float)
                ],
            )
            for split, name, label in names
        ]
        charts.append(
            Chart(
                key=key,
                title=title,
                svg=line_chart(title=title, series=series, y_range=y_range),
                legend=legend(series),
            )
        )
    return charts


def training_settings(hyperparameters: dict[str, Any], schedule: dict[str, Any] | None = None) -> list[Setting]:
    """Every hyper-parameter the run uses: the stored overrides over ``TrainConfig``'s defaults.

    A field left to the engine ("auto") shows the value its ``schedule`` resolved, None until it is known.
    """
    from dpo_engine.config import TrainConfig

    defaults = TrainConfig(data="-")
    skipped = {"data", "eval_data", "model", "out", "resume"}
    settings = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in skipped:
            continue
        default = getattr(defaults, f.name)
        if f.metadata.get("auto") and default is None:
            default = "auto"
        auto = bool(f.metadata.get("auto")) and f.name not in hyperparameters
        value = (schedule or {}).get(f.name) if auto else hyperparameters.get(f.name, default)
        settings.append(Setting(f.name, value, default, str(f.metadata.get("help", "")), auto=auto))
    return settings


def newest_checkpoint_step(run: TrainingRun) -> int | None:
    """The step of the run's newest complete checkpoint in the artifact store, or None: what a resume continues from.

    The store is what every host shares (a resume may land on another worker host); ``dpo_engine.checkpoint``
    imports torch, which the web does not load: its ``state.json`` holds the step.
    """
    store = artifact_store()
    for uri in reversed(store.list_dirs(f"{run.store_key}/checkpoints")):
        try:
            with store.open(f"{uri}/state.json") as fh:
                return int(json.loads(fh.read())["step"])
        # ArtifactError: a worker pruned it between the listing and the read.
        except (ArtifactError, OSError, ValueError, KeyError):
            continue
    return None


def training_run_detail(*, run_id: int) -> TrainingRunDetail:
    """A training run with its curves, latest metrics, settings, dataset and the version it made."""
    run = get_object_or_404(
        TrainingRun.objects.select_related("base_version", "created_by").annotate(judgement_count=Count("judgements")),
        pk=run_id,
    )
    metrics = list(run.metrics.order_by("step", "split"))
    steps = [m for m in metrics if m.split == TrainingMetric.Split.TRAIN]
    last = steps[-1].values if steps else {}
    produced = ModelVersion.objects.filter(trained_by=run).first()
    return TrainingRunDetail(
        run=run,
        produced_version=produced,
        charts=metric_charts(metrics),
        latest=[(name, float(last[name])) for name in LATEST_SHOWN if isinstance(last.get(name), int | float)],
        metric_rows=len(steps),
        judgements=run.judgement_count,  # type: ignore[attr-defined]
        settings=training_settings(run.hyperparameters, run.schedule),
        next_generation=list(run.next_generation.select_related("model_version").order_by("id")),
        eval_rows=[
            EvalRow(label, run.eval_before.get(name), run.eval_after.get(name), share)
            for name, label, share in EVAL_ROWS
            if name in run.eval_before or name in run.eval_after
        ],
        resumable_from_step=newest_checkpoint_step(run) if run.status in _RESUMABLE else None,
        produced_rounds=list(produced.generation_runs.order_by("id")) if produced else [],
    )


_RESUMABLE = (RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass(frozen=True)
class SchedulePreview:
    """What a run started now would train on and how: pairs the filter keeps, held out, and the schedule."""

    decided: int
    heldout: int
    schedule: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def training_pairs(self) -> int:
        return self.decided - self.heldout

    @property
    def heldout_min_pairs(self) -> int:
        return HELDOUT_MIN_PAIRS


def training_schedule_preview(
    *, judgement_filter: JudgementFilter, hyperparameters: dict[str, Any], processes: int = 1
) -> SchedulePreview:
    """Count the pairs the filter would export now and resolve the engine's schedule on the training share.

    Counting streams the decisions (ids only), as the export would; the schedule is the one ``processes``
    processes resolve.
    """
    from dpo_engine.config import resolve_schedule

    decided = sum(1 for _ in preference_decisions(judgement_filter=judgement_filter))
    held = heldout_size(decided)
    if not decided:
        return SchedulePreview(decided, held, error="No decided comparisons match: the run would have nothing to "
                                                    "train on.")
    try:
        schedule = resolve_schedule(
            pairs=decided - held, given=training_config_check(hyperparameters), world_size=processes
        )
    except ValueError as exc:
        return SchedulePreview(decided, held, error=str(exc))
    return SchedulePreview(decided, held, schedule=schedule.to_json())


def generation_run_detail(*, run_id: int) -> GenerationRun:
    return get_object_or_404(
        GenerationRun.objects.select_related("model_version__parent", "after_training", "created_by"), pk=run_id
    )


# Model versions -------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRow:
    version: ModelVersion
    depth: int
    trained_by: TrainingRun | None
    children: int
    generation_runs: int


def model_versions_overview() -> list[VersionRow]:
    """Every model version as a lineage tree: each parent followed by its children, indented by depth."""
    versions = list(
        ModelVersion.objects.select_related("parent", "trained_by").annotate(
            child_count=Count("children", distinct=True), generation_count=Count("generation_runs", distinct=True)
        )
    )
    children: dict[int | None, list[ModelVersion]] = {}
    for version in versions:
        children.setdefault(version.parent_id, []).append(version)
    rows: list[VersionRow] = []

    def walk(parent_id: int | None, depth: int) -> None:
        for version in children.get(parent_id, []):
            rows.append(
                VersionRow(
                    version=version,
                    depth=depth,
                    trained_by=version.trained_by,
                    children=version.child_count,  # type: ignore[attr-defined]
                    generation_runs=version.generation_count,  # type: ignore[attr-defined]
                )
            )
            walk(version.pk, depth + 1)

    walk(None, 0)
    return rows


@dataclass(frozen=True)
class VersionDetail:
    version: ModelVersion
    lineage: list[ModelVersion]
    children: list[ModelVersion]
    training_runs: list[TrainingRun]
    generation_runs: list[GenerationRun]


def model_version_detail(*, version_id: int) -> VersionDetail:
    """A version with its ancestors (oldest first), children, and the runs that started from it."""
    version = get_object_or_404(
        ModelVersion.objects.select_related("parent", "trained_by").prefetch_related(
            Prefetch("children", queryset=ModelVersion.objects.order_by("id"))
        ),
        pk=version_id,
    )
    return VersionDetail(
        version=version,
        lineage=list(reversed(version.ancestors())),
        children=list(version.children.all()),
        training_runs=list(version.training_runs.select_related("produced_version").order_by("-id")[:RUNS_SHOWN]),
        generation_runs=list(version.generation_runs.order_by("-id")[:RUNS_SHOWN]),
    )


# Generation rounds ----------------------------------------------------------------------


def generation_prompts(*, run: GenerationRun) -> list[Prompt]:
    """The prompts a generation round answers, oldest first, as its selection and cap say.

    A round of a campaign answers that campaign's prompts ("unpaired": without an open comparison there).
    """
    prompts = Prompt.objects.order_by("id")
    open_comparisons = Comparison.objects.filter(judgement_count__lt=F("target_judgements"))
    if run.campaign_id is not None:
        prompts = prompts.filter(campaigns=run.campaign_id)
        open_comparisons = open_comparisons.filter(campaign_id=run.campaign_id)
    if run.prompts == GenerationRun.Prompts.NEW and run.since is not None:
        prompts = prompts.filter(created_at__gte=run.since)
    if run.prompts == GenerationRun.Prompts.UNPAIRED:
        open_ids = open_comparisons.values("prompt_id")
        prompts = prompts.exclude(id__in=open_ids)
    selected = list(prompts)
    if run.prompts == GenerationRun.Prompts.TAG:
        # JSON containment is not portable to SQLite, and tags are short lists: filter here.
        selected = [p for p in selected if run.tag in (p.tags or [])]
    if run.purpose != Purpose.EVALUATION:
        # Prompts kept for evaluation are never answered for training, so no version learns them.
        selected = [p for p in selected if settings.DUET_EVAL_TAG not in (p.tags or [])]
    return selected[: run.max_prompts] if run.max_prompts else selected


def generation_prompts_done(*, run: GenerationRun, among: list[int] | None = None) -> set[int]:
    """The prompts (of ``among``, when given) that ``run`` has already answered: a chunk stores all of its
    prompts' answers or none."""
    completions = Completion.objects.filter(model_version_id=run.model_version_id, generation__generation_run=run.pk)
    if among is not None:
        completions = completions.filter(prompt_id__in=among)
    return set(completions.values_list("prompt_id", flat=True).distinct())


def generation_shards(*, run: GenerationRun) -> list[GenerationShard]:
    """The round's shards in order, for its page and the API."""
    return list(GenerationShard.objects.filter(run=run).order_by("index"))


def first_completions(*, version: ModelVersion, prompts: list[Prompt]) -> dict[int, Completion]:
    """``version``'s oldest completion of each of ``prompts`` that has one, by prompt id."""
    found: dict[int, Completion] = {}
    for completion in Completion.objects.filter(model_version=version, prompt_id__in=[p.id for p in prompts]).order_by(
        "id"
    ):
        found.setdefault(completion.prompt_id, completion)
    return found
