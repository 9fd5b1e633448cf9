"""The artifact store's overhead: publish and fetch through a ``file://`` and an S3 store against a plain copy.

    .venv/bin/python -m bench.artifact_store [--repeat 2] [--checkpoint-scale 3] [--dir /tmp]

Two folders: the default model's weights (``resolve_model_path("smollm2-135m-instruct")``, converted
once into the model cache) and a checkpoint-sized one made beside it (a full fine-tune's checkpoint
holds the weights plus AdamW's two moments, so ``--checkpoint-scale`` times the weights, in
random bytes split like ``weights.pt`` / ``optimizer.pt``). Each is

- copied with ``shutil.copytree`` (the peer: what a worker does today with a local folder);
- published with ``ArtifactStore.put_dir`` and fetched with ``get_dir`` into an empty cache,
  through a ``file://`` store and through S3 on moto's standalone server (started here, on
  127.0.0.1; it keeps objects in memory and temporary files, so it stands in for a LAN store,
  not for a real S3's bandwidth);
- fetched once more from the warm cache (what every job after the first on a host pays).

The store hashes every byte on the way up and down (the manifest's sha256s); that, the S3
protocol and moto's own speed are the overhead the ratios show. With ``--repeat N`` each timing
keeps its fastest of N: the machine is shared. Ratios are store time / plain copy time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.artifacts.store import ArtifactStore  # noqa: E402

MB = 1_000_000
BUCKET = "duet-bench"


def _best(repeat: int, run: Callable[[], object], reset: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        reset()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def make_checkpoint(weights: Path, out: Path, scale: float) -> Path:
    """A folder shaped like a full fine-tune's checkpoint: weights, optimizer state, small files."""
    out.mkdir(parents=True)
    shutil.copyfile(weights / "model.safetensors", out / "weights.pt")
    left = int(_size(weights) * (scale - 1))
    with (out / "optimizer.pt").open("wb") as handle:
        while left > 0:
            chunk = os.urandom(min(left, 16 * MB))
            handle.write(chunk)
            left -= len(chunk)
    (out / "scheduler.pt").write_bytes(os.urandom(1024))
    (out / "state.json").write_text('{"step": 100}')
    return out


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    log = (workdir / "moto.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        import s3fs

        s3fs.S3FileSystem(key="bench", secret="bench", client_kwargs={"endpoint_url": endpoint}).mkdir(BUCKET)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(name: str, folder: Path, stores: dict[str, ArtifactStore], work: Path, repeat: int) -> None:
    size = _size(folder)
    copy_to = work / "plain-copy"
    plain = _best(repeat, lambda: shutil.copytree(folder, copy_to), lambda: shutil.rmtree(copy_to, ignore_errors=True))
    shutil.rmtree(copy_to, ignore_errors=True)
    print(f"\n{name}: {size / MB:,.0f} MB in {sum(1 for p in folder.rglob('*') if p.is_file())} files")
    print(f"  {'plain copytree':<24} {plain:7.2f} s  {size / MB / plain:7.0f} MB/s  ratio 1.00")
    for kind, store in stores.items():
        key = f"bench/{name}"

        def clear_cache(store: ArtifactStore = store) -> None:
            shutil.rmtree(store.cache_dir, ignore_errors=True)

        publish = _best(repeat, lambda: store.put_dir(folder, key), lambda: store.remove(key))
        fetch = _best(repeat, lambda: store.get_dir(key), clear_cache)
        cached = _best(repeat, lambda: store.get_dir(key), lambda: None)
        for label, seconds in (("publish", publish), ("fetch", fetch), ("fetch, cached", cached)):
            print(
                f"  {kind + ' ' + label:<24} {seconds:7.2f} s  {size / MB / seconds:7.0f} MB/s  "
                f"ratio {seconds / plain:.2f}"
            )
        store.remove(key)
        clear_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="keep the fastest of this many runs of each timing")
    parser.add_argument("--checkpoint-scale", type=float, default=3.0, help="checkpoint size in model weights")
    parser.add_argument("--dir", default=None, help="where the temporary stores, caches and copies go")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from dpo_engine.models import resolve_model_path

    weights = Path(resolve_model_path("smollm2-135m-instruct"))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="duet-bench-store-") as tmp:
        work = Path(tmp)
        checkpoint = make_checkpoint(weights, work / "checkpoint-100", args.checkpoint_scale)
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        with moto_server(work) as endpoint:
            stores = {
                "file://": ArtifactStore(f"file://{work / 'store'}", cache_dir=work / "cache-file"),
                "s3 (moto)": ArtifactStore(f"s3://{BUCKET}/duet", cache_dir=work / "cache-s3", endpoint_url=endpoint),
            }
            print(f"{os.cpu_count()} CPUs; fastest of {args.repeat}; ratio = time / plain copytree of the same folder")
            measure("smollm2-135m-instruct", weights, stores, work, args.repeat)
            measure("checkpoint", checkpoint, stores, work, args.repeat)


if __name__ == "__main__":
    main()
