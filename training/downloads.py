"""Downloads streamed from the artifact store: the web never reads a worker's disk, nor holds a whole file."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.utils.text import slugify

from config.artifacts import ArtifactError, artifact_store
from config.artifacts.responses import store_file_response
from config.artifacts.tar import folder_tar_stream
from training.models import ModelVersion, TrainingRun

RUN_FILES = {"dataset": "dataset_path", "heldout": "heldout_path"}


class NothingToDownload(Exception):
    """The store holds no such file or folder; the message says why (the web answers 404 with it)."""


def version_tar_response(version: ModelVersion) -> StreamingHttpResponse:
    """The version's published folder as ``<name>.tar``; ``NothingToDownload`` says why there is none."""
    if not version.store_url:
        raise NothingToDownload(
            f"{version.name} is not in the artifact store ({version.path} is a built-in name or a hub id, which each "
            "worker resolves itself): there is nothing to download"
        )
    store = artifact_store()
    top = slugify(version.name.replace("+", "-")) or f"model-{version.pk}"
    try:
        if store.manifest_bytes(version.store_url) is None:
            raise NothingToDownload(f"{version.name}: {version.store_url} is not (or no longer) a published folder")
        stream = folder_tar_stream(store, version.store_url, top=top)
    except ArtifactError as exc:
        raise NothingToDownload(str(exc)) from exc
    response = StreamingHttpResponse(stream, content_type="application/x-tar")
    response["Content-Disposition"] = f'attachment; filename="{top}.tar"'
    return response


def run_file_response(run: TrainingRun, which: str) -> StreamingHttpResponse:
    """The run's frozen ``dataset`` or ``heldout`` file, streamed from the store URI its field holds."""
    uri = getattr(run, RUN_FILES[which])
    if not uri:
        raise NothingToDownload(f"{run} has no {which} file yet: it is written when the run starts")
    if "://" not in uri:
        raise NothingToDownload(f"{run}'s {which} file is on a worker's disk ({uri}), not in the artifact store")
    try:
        return store_file_response(
            uri, filename=f"run-{run.pk}-{uri.rsplit('/', 1)[-1]}", content_type="application/jsonl"
        )
    except ArtifactError as exc:
        raise NothingToDownload(str(exc)) from exc
