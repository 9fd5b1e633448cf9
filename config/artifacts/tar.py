"""A published folder as a tar stream: headers from ``tarfile``, file bodies copied chunk by chunk from
the store, so the web process never holds a whole model in memory nor writes it to its disk."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Iterator
from typing import BinaryIO

from config.artifacts.store import CHUNK_BYTES, MANIFEST, ArtifactError, ArtifactStore


def folder_tar_stream(store: ArtifactStore, folder_uri: str, *, top: str) -> Iterator[bytes]:
    """The folder's files (those its manifest lists, then the manifest) under ``top/``, as an uncompressed tar."""
    folder_uri = folder_uri.rstrip("/")
    raw = store.manifest_bytes(folder_uri)
    if raw is None:
        raise ArtifactError(f"{folder_uri}/{MANIFEST} not found in the store (DUET_ARTIFACTS={store.root})")
    now = int(time.time())
    written = 0
    for entry in json.loads(raw)["files"]:
        yield (header := _header(f"{top}/{entry['path']}", int(entry["size"]), now))
        with store.open(f"{folder_uri}/{entry['path']}") as src:
            yield from _body(src, int(entry["size"]), f"{folder_uri}/{entry['path']}")
        written += len(header) + _padded(int(entry["size"]))
    yield (header := _header(f"{top}/{MANIFEST}", len(raw), now))
    yield raw + b"\0" * (_padded(len(raw)) - len(raw))
    written += len(header) + _padded(len(raw))
    # Two zero blocks end the archive; tar fills the last record up, as tarfile does.
    end = 2 * tarfile.BLOCKSIZE
    yield b"\0" * (end + -(written + end) % tarfile.RECORDSIZE)


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padded(size: int) -> int:
    return size + -size % tarfile.BLOCKSIZE


def _body(src: BinaryIO, size: int, uri: str) -> Iterator[bytes]:
    left = size
    while left > 0:
        chunk = src.read(min(CHUNK_BYTES, left))
        if not chunk:
            raise ArtifactError(f"{uri} ended {left} bytes short of the size its manifest gives")
        left -= len(chunk)
        yield chunk
    yield b"\0" * (-size % tarfile.BLOCKSIZE)
