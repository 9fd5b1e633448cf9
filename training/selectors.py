"""Reads for the training app's staff pages: runs, one run with its metric curves, model versions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, Prefetch
from django.shortcuts import get_object_or_404

from annotate.models import Comparison, Completion, Prompt
from training.charts import Series, legend, line_chart
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingMetric, TrainingRun

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

    @property
    def changed(self) -> bool:
        return bool(self.value != self.default)


# Which TRL metric names each chart on the run page draws, with a fixed y range where one is natural.
CHARTS: tuple[tuple[str, str, tuple[tuple[str, str], ...], tuple[float, float] | None], ...] = (
    ("loss", "Loss", (("loss", "loss"),), None),
    ("accuracy", "Reward accuracy", (("rewards/accuracies", "accuracy"),), (0.0, 1.0)),
    ("margin", "Reward margin", (("rewards/margins", "margin"),), None),
    ("rewards", "Chosen and rejected rewards", (("rewards/chosen", "chosen"), ("rewards/rejected", "rejected")), None),
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
class TrainingRunDetail:
    run: TrainingRun
    produced_version: ModelVersion | None
    charts: list[Chart]
    latest: list[tuple[str, float]]
    metric_rows: int
    judgements: int
    settings: list[Setting]
    next_generation: list[GenerationRun] = field(default_factory=list)


def metric_charts(metrics: list[TrainingMetric]) -> list[Chart]:
    """The run page's four curves from its stored metric rows, one point per logged step."""
    charts = []
    for key, title, names, y_range in CHARTS:
        series = [
            Series(label, [(m.step, m.values[name]) for m in metrics if isinstance(m.values.get(name), int | float)])
            for name, label in names
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


def training_settings(hyperparameters: dict[str, Any]) -> list[Setting]:
    """Every hyper-parameter the run uses: the stored overrides over ``TrainConfig``'s defaults."""
    from dpo_engine.config import TrainConfig

    defaults = TrainConfig(data="-")
    skipped = {"data", "eval_data", "model", "out", "resume"}
    return [
        Setting(
            name=f.name,
            value=hyperparameters.get(f.name, getattr(defaults, f.name)),
            default=getattr(defaults, f.name),
            help=str(f.metadata.get("help", "")),
        )
        for f in dataclasses.fields(TrainConfig)
        if f.name not in skipped
    ]


def training_run_detail(*, run_id: int) -> TrainingRunDetail:
    """A training run with its curves, latest metrics, settings, dataset and the version it made."""
    run = get_object_or_404(
        TrainingRun.objects.select_related("base_version", "created_by").annotate(judgement_count=Count("judgements")),
        pk=run_id,
    )
    metrics = list(run.metrics.order_by("step"))
    last = metrics[-1].values if metrics else {}
    return TrainingRunDetail(
        run=run,
        produced_version=ModelVersion.objects.filter(trained_by=run).first(),
        charts=metric_charts(metrics),
        latest=[(name, float(last[name])) for name in LATEST_SHOWN if isinstance(last.get(name), int | float)],
        metric_rows=len(metrics),
        judgements=run.judgement_count,  # type: ignore[attr-defined]
        settings=training_settings(run.hyperparameters),
        next_generation=list(run.next_generation.select_related("model_version").order_by("id")),
    )


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
    """The prompts a generation round answers, oldest first, as its selection and cap say."""
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


def first_completions(*, version: ModelVersion, prompts: list[Prompt]) -> dict[int, Completion]:
    """``version``'s oldest completion of each of ``prompts`` that has one, by prompt id."""
    found: dict[int, Completion] = {}
    for completion in Completion.objects.filter(model_version=version, prompt_id__in=[p.id for p in prompts]).order_by(
        "id"
    ):
        found.setdefault(completion.prompt_id, completion)
    return found
