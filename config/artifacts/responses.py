"""A file of the store as a download, streamed chunk by chunk: the web never holds a whole file in memory."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import BinaryIO

from django.http import StreamingHttpResponse

from config.artifacts import artifact_store
from config.artifacts.store import CHUNK_BYTES


def store_file_response(uri: str, *, filename: str, content_type: str | None = None) -> StreamingHttpResponse:
    """The file at ``uri`` as the attachment ``filename``; ``ArtifactError`` (naming it) when the store cannot open it.

    Without ``content_type`` the filename's type is sent, as ``FileResponse`` would (else ``application/octet-stream``).
    """
    handle = artifact_store().open(uri)
    if content_type is None:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    response = StreamingHttpResponse(_chunks(handle), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
