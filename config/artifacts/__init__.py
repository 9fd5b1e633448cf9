"""The artifact store every host shares (``DUET_ARTIFACTS``) and each worker's local cache (``DUET_CACHE``)."""

from __future__ import annotations

import os

from config.artifacts.store import ArtifactError, ArtifactRef, ArtifactStore, Progress

__all__ = ["ArtifactError", "ArtifactRef", "ArtifactStore", "Progress", "artifact_store"]

_stores: dict[tuple[int, str, str, str | None], ArtifactStore] = {}


def artifact_store() -> ArtifactStore:
    """The store the settings name; one per process and per settings (tests change them).

    Keyed by the process id too: an RQ work-horse is a fork, and an S3 client's connections and
    event loop do not survive a fork.
    """
    from django.conf import settings

    root, endpoint = str(settings.DUET_ARTIFACTS), settings.DUET_ARTIFACTS_ENDPOINT_URL or None
    key = (os.getpid(), root, str(settings.DUET_CACHE), endpoint)
    if key not in _stores:
        _stores[key] = ArtifactStore(root, cache_dir=settings.DUET_CACHE, endpoint_url=endpoint)
    return _stores[key]
