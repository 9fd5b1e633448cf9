"""The artifact store every host shares (``DUET_ARTIFACTS``) and each worker's local cache (``DUET_CACHE``)."""

from __future__ import annotations

from training.artifacts.store import ArtifactError, ArtifactRef, ArtifactStore, Progress

__all__ = ["ArtifactError", "ArtifactRef", "ArtifactStore", "Progress", "artifact_store"]

_stores: dict[tuple[str, str, str | None], ArtifactStore] = {}


def artifact_store() -> ArtifactStore:
    """The store the settings name; one per process and per settings (tests change them)."""
    from django.conf import settings

    key = (str(settings.DUET_ARTIFACTS), str(settings.DUET_CACHE), settings.DUET_ARTIFACTS_ENDPOINT_URL or None)
    if key not in _stores:
        _stores[key] = ArtifactStore(key[0], cache_dir=settings.DUET_CACHE, endpoint_url=key[2])
    return _stores[key]
