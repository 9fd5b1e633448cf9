"""Model versions: every version, registered by hand or made by training, comes in through one function."""

from __future__ import annotations

from training.models import ModelVersion, TrainingRun


def model_version_register(
    *, name: str, path: str, parent: ModelVersion | None = None, trained_by: TrainingRun | None = None
) -> ModelVersion:
    """Add a model version by name; ``path`` must resolve (built-in name, local folder or hub id)."""
    from dpo_engine.models import resolve_model_path

    name = name.strip()
    if not name:
        raise ValueError("a model version needs a name")
    if ModelVersion.objects.filter(name=name).exists():
        raise ValueError(f"a model version named {name!r} exists already")
    resolve_model_path(path)
    return ModelVersion.objects.create(name=name, path=path, parent=parent, trained_by=trained_by)


def default_model_version() -> ModelVersion:
    """The built-in SmolLM2-135M-Instruct version (made again if someone deleted it)."""
    from dpo_engine.config import DEFAULT_MODEL

    version = ModelVersion.objects.filter(is_default=True).first()
    if version is None:
        version, _ = ModelVersion.objects.get_or_create(
            name=DEFAULT_MODEL, defaults={"path": DEFAULT_MODEL, "is_default": True}
        )
    return version


def latest_model_version() -> ModelVersion:
    """The newest version made by a run that learned, else the default (which this may create).

    A run that did not learn still registers its version, but the loop does not build on it.
    """
    trained = ModelVersion.objects.exclude(trained_by=None).exclude(trained_by__learned=False)
    return trained.order_by("-id").first() or default_model_version()


def trained_version_name(*, base: ModelVersion, run: TrainingRun) -> str:
    """``root+dpoN``: the root of the lineage and the run that made it, so names stay short and unique."""
    root = base.name.split("+dpo")[0]
    return f"{root}+dpo{run.pk}"
