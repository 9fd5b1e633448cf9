"""Model weights in the store: published once at registration, fetched into a worker's cache to load."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from django.utils.text import slugify

from config.artifacts import ArtifactRef, Progress, artifact_store
from config.artifacts.store import local_content_hash

if TYPE_CHECKING:
    from training.models import ModelVersion

MODELS_PREFIX = "models"


def model_publish(local: Path, *, name: str, progress: Progress | None = None) -> ArtifactRef:
    """Publish a model folder under ``models/<slug>-<hash12>/``: the same weights land in the same place."""
    content_hash = local_content_hash(local)
    slug = slugify(name.replace("+", "-"))[:80] or "model"
    return artifact_store().put_dir(local, f"{MODELS_PREFIX}/{slug}-{content_hash[:12]}", progress=progress)


def model_version_local_path(version: ModelVersion, *, progress: Progress | None = None) -> str:
    """What ``dpo_engine`` loads: the version's folder fetched into this host's cache, else its name or hub id."""
    if version.store_url:
        return str(artifact_store().get_dir(version.store_url, progress=progress))
    return version.path
