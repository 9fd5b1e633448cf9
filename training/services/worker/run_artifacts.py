"""A training run's files in the artifact store, so that any worker host can run it or resume it.

The worker trains in a folder of its own host (``DUET_RUNS_DIR/train-<id>``); the store holds the run's
copy under ``runs/train-<id>/``: ``dataset.jsonl`` and ``heldout.jsonl`` once frozen, the newest complete
``checkpoints/step-N/`` folders (uploaded as the engine writes them), ``metrics.jsonl`` with each of them;
a finished run's ``final/`` is published as ``models/<version name>/``. The uploader watches the folder
rather than the engine's callbacks, so it serves an engine in this process and one launched as a child
(``torchrun``) alike.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from config.artifacts import ArtifactError, ArtifactRef, artifact_store
from config.artifacts.store import MANIFEST
from training.models import TrainingMetric, TrainingRun
from training.services.model_store import model_publish, model_version_local_path
from training.services.worker.runtime import metric_row

Log = Callable[[str], None]

# Seconds between two looks of the uploader at the run's checkpoints folder.
UPLOAD_POLL_SECONDS = 1.0
# Seconds the job waits for the uploader's thread to finish an upload in flight when training ends.
UPLOAD_JOIN_SECONDS = 60
# Bytes between two progress lines in the run's log while a checkpoint is fetched.
FETCH_LOG_EVERY_BYTES = 256 * 1024 * 1024

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
DATASET = "dataset.jsonl"
HELDOUT = "heldout.jsonl"


def run_work_dir(run: TrainingRun) -> Path:
    """The run's working folder on the host that runs the job (never a path another host wrote)."""
    return Path(settings.DUET_RUNS_DIR) / f"train-{run.pk}"


def size_text(size: int) -> str:
    """``12.3 MB``: a size for the run's log."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the frozen dataset -------------------------------------------------------------------------------------------


def dataset_publish(*, run: TrainingRun, dataset: Path, heldout: Path | None) -> tuple[str, str]:
    """Put the frozen files into the run's store folder; their store URIs (the held-out one "" without it).

    A run freezes its data once, before it ever trains: whatever the store holds under its name already
    is a leftover of a database since reset (run ids are reused), and a resume would continue from it.
    """
    store = artifact_store()
    store.remove(run.store_key)
    uri = store.put_file(dataset, f"{run.store_key}/{DATASET}")
    held_uri = store.put_file(heldout, f"{run.store_key}/{HELDOUT}") if heldout is not None else ""
    return uri, held_uri


def dataset_fetch(*, run: TrainingRun, work: Path, log: Log) -> tuple[Path, Path | None]:
    """The run's frozen files in ``work``, fetched from the store where this host lacks them.

    The training file is checked against the hash recorded when it was frozen: a run trains on exactly
    the pairs its judgement list names, on whichever host.
    """
    store = artifact_store()
    dataset = work / DATASET
    heldout = work / HELDOUT if run.heldout_path else None
    for uri, local in ((run.dataset_path, dataset), (run.heldout_path, heldout)):
        if local is None or local.exists():
            continue
        try:
            store.get_file(uri, local)
        except ArtifactError as exc:
            raise ArtifactError(f"could not fetch the run's frozen data: {exc}") from exc
        log(f"fetched {local.name} ({size_text(local.stat().st_size)}) from {uri}")
    found = _sha256(dataset)
    if run.dataset_sha256 and found != run.dataset_sha256:
        dataset.unlink()
        raise ValueError(
            f"{run.dataset_path} has SHA-256 {found}, but the run froze {run.dataset_sha256}: "
            "the stored dataset changed since it was frozen"
        )
    return dataset, heldout


# --- checkpoints --------------------------------------------------------------------------------------------------


def _complete_checkpoints(work: Path) -> list[Path]:
    """The complete ``checkpoints/step-N`` folders under ``work``, oldest first (the engine's rule)."""
    root = work / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / "state.json").exists())


def checkpoint_fetch(*, run: TrainingRun, work: Path, log: Log) -> str | None:
    """Bring the run's newest stored checkpoint into ``work`` unless this host has it (or a newer one); its name,
    or None when nothing was fetched.

    The same host resuming keeps its own newest, which is never older than the newest uploaded; a host that ran
    the run earlier, before another host took it further, fetches the newer one.
    """
    store = artifact_store()
    stored = store.list_dirs(f"{run.store_key}/{CHECKPOINTS}")
    if not stored:
        return None
    uri = stored[-1]
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    local = _complete_checkpoints(work)
    # Zero-padded step numbers: names compare as steps do.
    if local and local[-1].name >= name:
        return None
    log(f"fetching checkpoint {name} from {uri}")
    try:
        cached = store.get_dir(uri, progress=fetch_progress(log, name))
    except ArtifactError as exc:
        raise ArtifactError(f"could not fetch checkpoint {name}: {exc}") from exc
    target = work / CHECKPOINTS / name
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Moved, not copied: a checkpoint is fetched once, and a cached copy would hold gigabytes for nothing.
    # The cache's folder carries the store's manifest; the engine's folder is what the engine wrote.
    shutil.move(cached, target)
    (target / MANIFEST).unlink(missing_ok=True)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    log(f"fetched checkpoint {name} ({size_text(size)}) from {uri}")
    _metrics_fetch(run=run, work=work)
    return name


def fetch_progress(log: Log, name: str) -> Callable[[int, int], None]:
    """A progress callback that writes a line to the run's log every ``FETCH_LOG_EVERY_BYTES``."""
    logged = [0]

    def progress(done: int, total: int) -> None:
        if done - logged[0] >= FETCH_LOG_EVERY_BYTES or (done == total and logged[0] < done):
            logged[0] = done
            log(f"fetching {name}: {size_text(done)} of {size_text(total)}")

    return progress


def _metrics_fetch(*, run: TrainingRun, work: Path) -> None:
    """The stored curve beside a fetched checkpoint, so the resumed ``metrics.jsonl`` keeps its first steps.

    It was uploaded while the engine appended to it: a last line cut short is dropped.
    """
    store = artifact_store()
    key = f"{run.store_key}/{METRICS}"
    if not store.exists(key):
        return
    local = work / METRICS
    store.get_file(key, local)
    data = local.read_bytes()
    local.write_bytes(data[: data.rfind(b"\n") + 1])


def metrics_backfill(*, run: TrainingRun, work: Path, log: Log) -> int:
    """Store the steps of ``work``'s metrics file, up to its newest checkpoint, that the run's rows lack; how many.

    A launched run's metrics reach the database through the job's relay, after the engine wrote them to the file
    and possibly after it wrote the checkpoint too: a worker killed in between loses those rows, while the file
    travelled with the checkpoint. The resume continues after the checkpoint, so its curve must come from the file.
    """
    checkpoints = _complete_checkpoints(work)
    if not checkpoints or not (work / METRICS).exists():
        return 0
    upto = int(checkpoints[-1].name.rsplit("-", 1)[-1])
    stored = set(run.metrics.values_list("split", "step"))
    missing: dict[tuple[str, int], dict[str, float]] = {}
    for line in (work / METRICS).read_text(encoding="utf-8").splitlines():
        try:
            split, step, values = metric_row(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill
        if step <= upto and (split, step) not in stored:
            missing[(split, step)] = values
    TrainingMetric.objects.bulk_create(
        [TrainingMetric(run=run, split=split, step=step, values=v) for (split, step), v in missing.items()],
        ignore_conflicts=True,
    )
    if missing:
        log(f"stored {len(missing)} step(s) of the curve up to step {upto} from {METRICS}: the lost worker had not")
    return len(missing)


class CheckpointUploader:
    """Puts each new complete checkpoint of ``work`` into the store, with the metrics file, from a thread.

    Only the newest local checkpoint is uploaded at each look: an older one is superseded (and the engine
    may be deleting it). The store keeps the newest ``keep`` (0: all), as the engine keeps its own.
    """

    def __init__(self, *, run: TrainingRun, work: Path, keep: int, log: Log) -> None:
        self.key = run.store_key
        self.work = work
        self.keep = keep
        self.log = log
        self.uploaded: set[str] = set(self._stored_names())
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name=f"uploads-{self.key}", daemon=True)

    def _stored_names(self) -> list[str]:
        return [k.rstrip("/").rsplit("/", 1)[-1] for k in artifact_store().list_dirs(f"{self.key}/{CHECKPOINTS}")]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=UPLOAD_JOIN_SECONDS)

    def _watch(self) -> None:
        while not self._stop.wait(UPLOAD_POLL_SECONDS):
            try:
                self.sync()
            except Exception as exc:  # a failed upload is retried at the next look
                self.log(f"checkpoint upload failed, retrying: {type(exc).__name__}: {exc}")

    def sync(self, *, final: bool = False) -> ArtifactRef | None:
        """Upload the newest complete checkpoint if it is not in the store yet; its reference, or None.

        The metrics file travels before each checkpoint, and at the ``final`` look, so the store's copy
        ends with the run's last steps.
        """
        with self._lock:
            found = _complete_checkpoints(self.work)
            new = bool(found) and found[-1].name not in self.uploaded
            # The curve goes first: the stored one then reaches every step the stored checkpoint has seen.
            if new or final:
                self._metrics_upload()
            return self._upload(found[-1]) if new else None

    def _metrics_upload(self) -> None:
        metrics = self.work / METRICS
        if metrics.exists():
            artifact_store().put_file(metrics, f"{self.key}/{METRICS}")

    def _upload(self, folder: Path) -> ArtifactRef | None:
        store = artifact_store()
        key = f"{self.key}/{CHECKPOINTS}/{folder.name}"
        try:
            ref = store.put_dir(folder, key)
        except (OSError, ArtifactError):
            if (folder / "state.json").exists():
                raise
            # The engine pruned it while it travelled: a newer one is there to upload at the next look.
            store.remove(key)
            return None
        self.uploaded.add(folder.name)
        self.log(f"uploaded checkpoint {folder.name} ({size_text(ref.size)}) to {ref.uri}")
        self._prune()
        return ref

    def _prune(self) -> None:
        if self.keep <= 0:
            return
        store = artifact_store()
        for old in store.list_dirs(f"{self.key}/{CHECKPOINTS}")[: -self.keep]:
            store.remove(old)


@contextmanager
def checkpoint_uploads(*, run: TrainingRun, work: Path, keep: int, log: Log) -> Iterator[CheckpointUploader]:
    """Upload checkpoints while the block trains, then once more after it (also when it fails).

    The last look catches what the engine wrote at its end, such as the checkpoint of a cancelled run.
    """
    uploader = CheckpointUploader(run=run, work=work, keep=keep, log=log)
    uploader.start()
    failed = False
    try:
        yield uploader
    except BaseException:
        failed = True
        raise
    finally:
        uploader.stop()
        try:
            uploader.sync(final=True)
        except Exception as exc:
            if not failed:
                raise
            log(f"could not upload the last checkpoint: {type(exc).__name__}: {exc}")


# --- the final model ----------------------------------------------------------------------------------------------


def final_model_publish(*, final_dir: Path, name: str, log: Log) -> ArtifactRef:
    """Publish a finished run's ``final/`` as the version's store folder, so any host can load it."""
    try:
        ref = model_publish(final_dir, name=name)
    except ArtifactError as exc:
        raise ArtifactError(f"could not publish model {name}: {exc}") from exc
    log(f"uploaded model {name} ({size_text(ref.size)}) to {ref.uri}")
    return ref


def base_model_fetch(*, run: TrainingRun, log: Log) -> str:
    """What the engine loads as the run's base model: the version's store folder in this host's cache (fetched
    with progress in the run's log when absent), or its built-in name or hub id."""
    version = run.base_version
    try:
        return model_version_local_path(version, progress=fetch_progress(log, version.name))
    except ArtifactError as exc:
        raise ArtifactError(f"could not fetch base model {version.name}: {exc}") from exc
