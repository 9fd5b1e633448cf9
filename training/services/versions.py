"""Model versions: every version, registered by hand or made by training, comes in through one function."""

from __future__ import annotations

from pathlib import Path

from config.artifacts import ArtifactRef, Progress, artifact_store
from training.models import ModelVersion, TrainingRun
from training.services.model_store import model_publish, model_version_local_path

__all__ = ["model_version_local_path", "model_version_register"]


def model_version_register(
    *,
    name: str,
    path: str,
    parent: ModelVersion | None = None,
    trained_by: TrainingRun | None = None,
    ref: ArtifactRef | None = None,
    progress: Progress | None = None,
) -> ModelVersion:
    """Add a model version by name; ``path`` must resolve.

    ``path`` is a store URL (a published folder), a local folder or ``.gguf`` file (published
    into the store now, so workers on other hosts can load it), or a built-in name or hub id
    (each host resolves those itself). ``ref`` names a folder published already (a finished
    run's model); ``path`` then only says where it came from.
    """
    name = name.strip()
    if not name:
        raise ValueError("a model version needs a name")
    if ModelVersion.objects.filter(name=name).exists():
        raise ValueError(f"a model version named {name!r} exists already")
    ref = ref or _published(name=name, path=path, progress=progress)
    return ModelVersion.objects.create(
        name=name,
        path=path,
        parent=parent,
        trained_by=trained_by,
        store_url=ref.uri if ref else "",
        content_hash=ref.content_hash if ref else "",
    )


def _published(*, name: str, path: str, progress: Progress | None) -> ArtifactRef | None:
    """The store folder that holds ``path``'s weights, publishing a local one; None for built-in names and hub ids."""
    from dpo_engine.models import BUILTIN_MODELS, resolve_model_path

    if "://" in path:
        store = artifact_store()
        found = store.ref(path)
        if found is None:
            raise ValueError(f"{path} is not a published folder: it has no MANIFEST.json (DUET_ARTIFACTS={store.root})")
        return found
    local = Path(path).expanduser()
    if path.strip().lower() in BUILTIN_MODELS or not local.exists():
        resolve_model_path(path)
        return None
    return model_publish(Path(resolve_model_path(str(local))), name=name, progress=progress)


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
