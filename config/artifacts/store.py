"""One store for every artifact that more than one host reads: datasets, checkpoints, models.

The store is an fsspec URL (``file:///…`` for a local or shared filesystem, ``s3://bucket/prefix``
for object storage). A published folder is complete when its ``MANIFEST.json`` exists: the
manifest is written after every file it names, so a reader never acts on a half-published
folder, and its sha256 is the folder's content hash, which keys the workers' local caches.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
from filelock import FileLock

MANIFEST = "MANIFEST.json"
# Large enough that per-call overhead vanishes, small enough that streaming stays flat in memory.
CHUNK_BYTES = 8 * 1024 * 1024
# A fetch reads whole files: fewer, larger ranged GETs on S3 (on moto 64 MB blocks read a 200 MB file
# in 2.5 s against 4.1 s with 8 MB ones).
FETCH_BLOCK_BYTES = 64 * 1024 * 1024

Progress = Callable[[int, int], None]


class ArtifactError(Exception):
    """A store operation failed; the message names the object and the store."""


@dataclass(frozen=True)
class ArtifactRef:
    """A published folder."""

    uri: str  # full URL of the folder in the store
    content_hash: str  # sha256 of its manifest
    size: int  # bytes in all its files


def _natural_key(text: str) -> list[Any]:
    """``step-20`` before ``step-100``: checkpoint folders sort by their numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _copy_stream(src: BinaryIO, dst: BinaryIO, progress: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Copy in chunks, hashing on the way (one pass over the bytes); return (size, sha256).

    The hash runs in a thread beside the copy (hashlib lets go of the GIL): sha256 is as slow as
    a local disk, so hashing after each write would nearly double the time.
    """
    digest = hashlib.sha256()
    size = 0
    with ThreadPoolExecutor(max_workers=1) as hasher:
        pending: Future[None] | None = None
        while chunk := src.read(CHUNK_BYTES):
            if pending is not None:
                pending.result()  # at most two chunks in memory, hashed in order
            pending = hasher.submit(digest.update, chunk)
            dst.write(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
        if pending is not None:
            pending.result()
    return size, digest.hexdigest()


def _local_files(folder: Path) -> list[tuple[str, Path]]:
    """Every file under ``folder`` as (posix relative path, path), sorted; a manifest at the top is the store's own."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST:
            files.append((rel, path))
    return files


def _manifest_bytes_of(entries: list[dict[str, Any]], size: int) -> bytes:
    return json.dumps({"files": entries, "size": size}, indent=1, sort_keys=True).encode()


def local_content_hash(folder: Path) -> str:
    """The content hash ``put_dir`` would give ``folder``, computed without a store (one read of each file)."""
    files = _local_files(folder)
    entries: list[dict[str, Any]] = [
        {"path": rel, "size": path.stat().st_size, "sha256": _file_sha256(path)} for rel, path in files
    ]
    return hashlib.sha256(_manifest_bytes_of(entries, sum(path.stat().st_size for _, path in files))).hexdigest()


class _Counter:
    """Adds chunk sizes up and reports (done, total) to the caller's progress callback."""

    def __init__(self, total: int, progress: Progress | None):
        self.done = 0
        self.total = total
        self.progress = progress

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


class ArtifactStore:
    """The store at ``root`` (an fsspec URL), caching fetched folders under ``cache_dir``."""

    def __init__(self, root: str, *, cache_dir: Path, endpoint_url: str | None = None):
        if "://" not in root:
            root = f"file://{Path(root).resolve()}"
        self.root = root.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.endpoint_url = endpoint_url or None
        self.protocol = self.root.split("://", 1)[0]
        options: dict[str, Any] = {}
        if self.protocol == "s3":
            # Other hosts write the store: a cached listing would hide their folders.
            options["use_listings_cache"] = False
            if self.endpoint_url:
                options["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        try:
            self.fs, self._root_path = fsspec.core.url_to_fs(self.root, **options)
        except (ImportError, ValueError) as exc:
            raise ArtifactError(f"DUET_ARTIFACTS={self.root} cannot be opened: {exc}") from exc
        if self.protocol == "file":
            self.fs.makedirs(self._root_path, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    # Addresses ------------------------------------------------------------------------------

    def uri(self, key: str) -> str:
        return f"{self.root}/{key.strip('/')}" if key.strip("/") else self.root

    def _path(self, uri_or_key: str) -> str:
        """The filesystem path of a key, or of a URI of this store's kind."""
        if "://" not in uri_or_key:
            return f"{self._root_path}/{uri_or_key.strip('/')}".rstrip("/")
        protocol, rest = uri_or_key.split("://", 1)
        if protocol != self.protocol:
            raise ArtifactError(f"{uri_or_key} is not in this store (DUET_ARTIFACTS={self.root})")
        return ("/" + rest.strip("/")) if protocol == "file" else rest.strip("/")

    def _uri_of_path(self, path: str) -> str:
        return f"file://{path}" if self.protocol == "file" else f"{self.protocol}://{path}"

    def _where(self) -> str:
        endpoint = f", endpoint {self.endpoint_url}" if self.endpoint_url else ""
        return f"DUET_ARTIFACTS={self.root}{endpoint}"

    @contextmanager
    def _errors(self, uri: str) -> Iterator[None]:
        """Turn the filesystem's errors into ones that name the object and the store."""
        try:
            yield
        except ArtifactError:
            raise
        except FileNotFoundError as exc:
            raise ArtifactError(f"{uri} not found in the store ({self._where()})") from exc
        except Exception as exc:  # botocore, aiohttp and OS errors alike: the store could not be used
            raise ArtifactError(f"{uri}: store unreachable or refused ({self._where()}): {exc}") from exc

    # Files ----------------------------------------------------------------------------------

    def put_file(self, local: Path, key: str, *, progress: Callable[[int], None] | None = None) -> str:
        """Upload ``local`` to ``key``; readers see the old object or the whole new one, never half."""
        return self._put_file(Path(local), key, progress)[0]

    def _put_file(self, local: Path, key: str, progress: Callable[[int], None] | None) -> tuple[str, int, str]:
        path, uri = self._path(key), self.uri(key)
        # S3 shows an object only once its upload completes; a filesystem needs a rename for that.
        target = f"{path}.tmp-{uuid.uuid4().hex}" if self.protocol == "file" else path
        with self._errors(uri):
            self.fs.makedirs(self.fs._parent(path), exist_ok=True)
            try:
                with local.open("rb") as src, self.fs.open(target, "wb", block_size=CHUNK_BYTES) as dst:
                    size, sha = _copy_stream(src, dst, progress)
                if target != path:
                    self.fs.mv(target, path)
            finally:
                if target != path and self.fs.exists(target):
                    self.fs.rm(target)
        return uri, size, sha

    def get_file(self, uri_or_key: str, local: Path) -> Path:
        """Download to ``local`` (through a temporary name, so ``local`` is whole or absent)."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp-{uuid.uuid4().hex}")
        try:
            with self.open(uri_or_key) as src, tmp.open("wb") as dst:
                _copy_stream(src, dst)
            tmp.replace(local)
        finally:
            tmp.unlink(missing_ok=True)
        return local

    def open(self, uri_or_key: str, *, block_size: int = CHUNK_BYTES) -> BinaryIO:
        """A streaming reader (ranged reads of ``block_size`` on S3); the caller closes it."""
        with self._errors(self._display(uri_or_key)):
            return self.fs.open(self._path(uri_or_key), "rb", block_size=block_size)  # type: ignore[no-any-return]

    def exists(self, uri_or_key: str) -> bool:
        with self._errors(self._display(uri_or_key)):
            return bool(self.fs.exists(self._path(uri_or_key)))

    def remove(self, uri_or_key: str) -> None:
        """Delete a file or a folder (its manifest first, so it turns incomplete before it thins out)."""
        path = self._path(uri_or_key)
        with self._errors(self._display(uri_or_key)):
            if self.fs.exists(f"{path}/{MANIFEST}"):
                self.fs.rm(f"{path}/{MANIFEST}")
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

    def _display(self, uri_or_key: str) -> str:
        return uri_or_key if "://" in uri_or_key else self.uri(uri_or_key)

    # Folders --------------------------------------------------------------------------------

    def manifest(self, uri_or_key: str) -> dict[str, Any] | None:
        """The folder's manifest, or None while it is incomplete or absent."""
        raw = self.manifest_bytes(uri_or_key)
        return None if raw is None else json.loads(raw)

    def manifest_bytes(self, uri_or_key: str) -> bytes | None:
        """The manifest exactly as stored (its sha256 is the content hash), or None."""
        path = f"{self._path(uri_or_key)}/{MANIFEST}"
        with self._errors(self._uri_of_path(path)):
            try:
                return bytes(self.fs.cat_file(path))
            except FileNotFoundError:
                return None

    def ref(self, uri_or_key: str) -> ArtifactRef | None:
        """The published folder at ``uri_or_key``, or None when it has no manifest."""
        raw = self.manifest_bytes(uri_or_key)
        if raw is None:
            return None
        return ArtifactRef(
            uri=self._uri_of_path(self._path(uri_or_key)),
            content_hash=hashlib.sha256(raw).hexdigest(),
            size=int(json.loads(raw)["size"]),
        )

    def _require_manifest(self, uri_or_key: str) -> tuple[bytes, dict[str, Any]]:
        raw = self.manifest_bytes(uri_or_key)
        if raw is None:
            where = self._uri_of_path(f"{self._path(uri_or_key)}/{MANIFEST}")
            raise ArtifactError(f"{where} not found in the store ({self._where()}): the folder is absent or incomplete")
        return raw, json.loads(raw)

    def put_dir(self, local: Path, key: str, *, progress: Progress | None = None) -> ArtifactRef:
        """Upload every file under ``local``, then the manifest: the folder is complete from that moment.

        Publishing the same content again uploads nothing; other content replaces the folder,
        which is incomplete (invisible) while that happens.
        """
        local = Path(local)
        if not local.is_dir():
            raise ArtifactError(f"{local} is not a folder: nothing to publish to {self.uri(key)}")
        files = _local_files(local)
        counter = _Counter(sum(path.stat().st_size for _, path in files), progress)
        if (existing := self.ref(key)) is not None:
            if local_content_hash(local) == existing.content_hash:
                return existing
            self.remove(key)
        entries = []
        for rel, path in files:
            _, size, sha = self._put_file(path, f"{key.strip('/')}/{rel}", counter)
            entries.append({"path": rel, "size": size, "sha256": sha})
        raw = _manifest_bytes_of(entries, counter.done)
        manifest_path = f"{self._path(key)}/{MANIFEST}"
        with self._errors(self._uri_of_path(manifest_path)):
            self.fs.pipe_file(manifest_path, raw)
        return ArtifactRef(uri=self.uri(key), content_hash=hashlib.sha256(raw).hexdigest(), size=counter.done)

    def list_dirs(self, prefix_key: str) -> list[str]:
        """URIs of the complete folders directly under ``prefix_key``, in natural order (step-20 before step-100)."""
        base = self._path(prefix_key)
        with self._errors(self._display(prefix_key)):
            try:
                manifests = self.fs.glob(f"{base}/*/{MANIFEST}")
            except FileNotFoundError:
                # s3fs, unlike a filesystem, raises for a prefix that holds nothing yet (or no more): no folders.
                manifests = []
        folders = [self._uri_of_path(str(path).rsplit("/", 1)[0]) for path in manifests]
        return sorted(folders, key=_natural_key)

    def get_dir(self, uri_or_key: str, *, progress: Progress | None = None) -> Path:
        """The folder, fetched once into ``cache_dir/<content hash>/`` and reused while it is intact."""
        raw, manifest = self._require_manifest(uri_or_key)
        content_hash = hashlib.sha256(raw).hexdigest()
        target = self.cache_dir / content_hash
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Two jobs on one host wanting the same folder: the second waits and then finds it in the cache.
        with FileLock(str(self.cache_dir / f"{content_hash}.lock")):
            if _cached_intact(target, manifest):
                return target
            if target.exists():
                shutil.rmtree(target)
            tmp = self.cache_dir / f".tmp-{content_hash[:16]}-{uuid.uuid4().hex}"
            try:
                self._fetch(uri_or_key, manifest, tmp, progress)
                (tmp / MANIFEST).write_bytes(raw)
                tmp.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _fetch(self, uri_or_key: str, manifest: dict[str, Any], into: Path, progress: Progress | None) -> None:
        counter = _Counter(int(manifest["size"]), progress)
        folder = self._display(uri_or_key).rstrip("/")
        for entry in manifest["files"]:
            dest = into / entry["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            uri = f"{folder}/{entry['path']}"
            with self.open(uri, block_size=FETCH_BLOCK_BYTES) as src, dest.open("wb") as dst, self._errors(uri):
                size, sha = _copy_stream(src, dst, counter)
            if (size, sha) != (entry["size"], entry["sha256"]):
                raise ArtifactError(
                    f"{uri} does not match its manifest (size {size}, sha256 {sha[:12]}…; "
                    f"expected {entry['size']}, {entry['sha256'][:12]}…): the store's copy is damaged"
                )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_intact(folder: Path, manifest: dict[str, Any]) -> bool:
    """Every file present with its size. Hashes were checked when it was fetched; re-hashing
    gigabytes at every job start would cost more than the fetch it saves."""
    if not (folder / MANIFEST).is_file():
        return False
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return False
    return True
