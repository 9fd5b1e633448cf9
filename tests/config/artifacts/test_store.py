"""The artifact store on a file:// store and on S3 (a real moto server), through the public interface."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from config.artifacts import ArtifactError, ArtifactStore
from config.artifacts.store import MANIFEST


def make_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text('{"a": 1}')
    (root / "weights.bin").write_bytes(bytes(range(256)) * 4000)
    (root / "sub" / "tokenizer.json").write_text("{}")
    return root


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_file_round_trips(artifacts, tmp_path):
    (tmp_path / "data.jsonl").write_text('{"x": 1}\n')
    uri = artifacts.store.put_file(tmp_path / "data.jsonl", "runs/r1/data.jsonl")
    assert uri == f"{artifacts.url}/runs/r1/data.jsonl"
    assert artifacts.store.get_file(uri, tmp_path / "back" / "d.jsonl").read_text() == '{"x": 1}\n'


def test_a_file_put_leaves_nothing_but_the_file(artifacts, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    artifacts.store.put_file(tmp_path / "a.txt", "f/a.txt")
    names = [p.rsplit("/", 1)[-1] for p in artifacts.store.fs.ls(artifacts.store._path("f"), detail=False)]
    assert names == ["a.txt"]


def test_a_folder_round_trips_with_its_hash_and_size(artifacts, tmp_path):
    source = make_folder(tmp_path / "model")
    ref = artifacts.store.put_dir(source, "models/m")
    fetched = artifacts.store.get_dir(ref.uri)
    assert {k: v for k, v in files_of(fetched).items() if k != MANIFEST} == files_of(source)
    assert ref.uri == f"{artifacts.url}/models/m"
    assert ref.size == sum(len(v) for v in files_of(source).values())
    raw = artifacts.store.open(f"{ref.uri}/{MANIFEST}").read()
    assert ref.content_hash == hashlib.sha256(raw).hexdigest()
    assert fetched == artifacts.cache / ref.content_hash


def test_progress_reports_bytes_up_and_down(artifacts, tmp_path):
    seen_up: list[tuple[int, int]] = []
    seen_down: list[tuple[int, int]] = []
    ref = artifacts.store.put_dir(make_folder(tmp_path / "m"), "models/m", progress=lambda d, t: seen_up.append((d, t)))
    artifacts.store.get_dir(ref.uri, progress=lambda d, t: seen_down.append((d, t)))
    assert seen_up[-1] == (ref.size, ref.size)
    assert seen_down[-1] == (ref.size, ref.size)


def test_a_second_fetch_reuses_the_cache(artifacts, tmp_path):
    ref = artifacts.store.put_dir(make_folder(tmp_path / "m"), "models/m")
    first = artifacts.store.get_dir(ref.uri)
    calls: list[int] = []
    assert artifacts.store.get_dir("models/m", progress=lambda d, t: calls.append(d)) == first
    assert calls == []


def test_publishing_the_same_content_again_uploads_nothing(artifacts, tmp_path):
    source = make_folder(tmp_path / "m")
    first = artifacts.store.put_dir(source, "models/m")
    calls: list[int] = []
    assert artifacts.store.put_dir(source, "models/m", progress=lambda d, t: calls.append(d)) == first
    assert calls == []


def test_publishing_other_content_replaces_the_folder(artifacts, tmp_path):
    source = make_folder(tmp_path / "m")
    first = artifacts.store.put_dir(source, "models/m")
    (source / "weights.bin").write_bytes(b"new")
    second = artifacts.store.put_dir(source, "models/m")
    assert second.content_hash != first.content_hash
    assert (artifacts.store.get_dir("models/m") / "weights.bin").read_bytes() == b"new"


def test_a_folder_without_its_manifest_is_invisible(artifacts, tmp_path):
    artifacts.store.put_dir(make_folder(tmp_path / "done"), "ckpt/step-1")
    (tmp_path / "w.bin").write_bytes(b"half")
    artifacts.store.put_file(tmp_path / "w.bin", "ckpt/step-2/w.bin")  # a publish that died before its manifest
    assert artifacts.store.list_dirs("ckpt") == [f"{artifacts.url}/ckpt/step-1"]
    assert artifacts.store.manifest("ckpt/step-2") is None
    assert artifacts.store.ref("ckpt/step-2") is None
    with pytest.raises(ArtifactError, match=r"ckpt/step-2/MANIFEST\.json not found in the store \(DUET_ARTIFACTS="):
        artifacts.store.get_dir("ckpt/step-2")


def test_folders_list_in_natural_order(artifacts, tmp_path):
    source = make_folder(tmp_path / "m")
    for step in (100, 20, 3):
        artifacts.store.put_dir(source, f"ckpt/step-{step}")
    assert [u.rsplit("/", 1)[-1] for u in artifacts.store.list_dirs("ckpt")] == ["step-3", "step-20", "step-100"]
    assert artifacts.store.list_dirs("nothing-here") == []


def test_a_damaged_cache_is_fetched_again(artifacts, tmp_path):
    ref = artifacts.store.put_dir(make_folder(tmp_path / "m"), "models/m")
    cached = artifacts.store.get_dir(ref.uri)
    (cached / "weights.bin").write_bytes(b"truncated")
    (cached / "sub" / "tokenizer.json").unlink()
    again = artifacts.store.get_dir(ref.uri)
    assert again == cached
    assert files_of(again)["weights.bin"] == bytes(range(256)) * 4000
    assert (again / "sub" / "tokenizer.json").exists()


def test_a_damaged_store_copy_is_refused_and_not_cached(file_artifacts, tmp_path):
    ref = file_artifacts.store.put_dir(make_folder(tmp_path / "m"), "models/m")
    (Path(file_artifacts.store._path("models/m")) / "weights.bin").write_bytes(b"x" * 1024000)
    with pytest.raises(ArtifactError, match=r"models/m/weights\.bin does not match its manifest"):
        file_artifacts.store.get_dir(ref.uri)
    assert not (file_artifacts.cache / ref.content_hash).exists()
    assert [p.name for p in file_artifacts.cache.iterdir() if not p.name.endswith(".lock")] == []


def test_concurrent_fetches_of_one_folder_fetch_once(artifacts, tmp_path):
    ref = artifacts.store.put_dir(make_folder(tmp_path / "m"), "models/m")
    fetchers: set[str] = set()
    results: list[Path] = []

    def fetch() -> None:
        # A store of its own per thread, as two jobs in two processes on one host would have.
        store = ArtifactStore(artifacts.url, cache_dir=artifacts.cache, endpoint_url=artifacts.store.endpoint_url)
        results.append(store.get_dir(ref.uri, progress=lambda d, t: fetchers.add(threading.current_thread().name)))

    threads = [threading.Thread(target=fetch, name=f"job-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4
    assert len(set(results)) == 1
    assert len(fetchers) == 1


def test_open_streams_a_file(artifacts, tmp_path):
    artifacts.store.put_dir(make_folder(tmp_path / "m"), "models/m")
    with artifacts.store.open("models/m/weights.bin") as handle:
        assert handle.read(3) == bytes([0, 1, 2])


def test_exists_and_remove(artifacts, tmp_path):
    artifacts.store.put_dir(make_folder(tmp_path / "m"), "models/m")
    assert artifacts.store.exists("models/m/config.json")
    artifacts.store.remove("models/m")
    assert not artifacts.store.exists("models/m/config.json")
    assert artifacts.store.manifest("models/m") is None
    artifacts.store.remove("models/m")  # gone already: nothing to do


def test_a_missing_file_is_named_with_the_store(artifacts, tmp_path):
    with pytest.raises(ArtifactError, match=rf"{artifacts.url}/nope\.txt not found in the store \(DUET_ARTIFACTS="):
        artifacts.store.get_file("nope.txt", tmp_path / "x")


def test_a_uri_of_another_kind_of_store_is_refused(file_artifacts):
    with pytest.raises(ArtifactError, match=r"s3://b/x is not in this store \(DUET_ARTIFACTS=file://"):
        file_artifacts.store.manifest("s3://b/x")


@pytest.mark.timeout(120)
def test_an_unreachable_endpoint_is_named(monkeypatch, tmp_path):
    from tests.conftest import MOTO_CREDENTIALS, free_port

    for name, value in MOTO_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = ArtifactStore("s3://bucket/p", cache_dir=tmp_path, endpoint_url=endpoint)
    with pytest.raises(ArtifactError, match=rf"s3://bucket/p/models/m/MANIFEST\.json: store unreachable .*{endpoint}"):
        store.manifest("models/m")


def test_a_prefix_beside_published_files_but_holding_none_lists_no_folders(artifacts, tmp_path):
    (tmp_path / "dataset.jsonl").write_text("{}\n")
    artifacts.store.put_file(tmp_path / "dataset.jsonl", "runs/train-1/dataset.jsonl")
    assert artifacts.store.list_dirs("runs/train-1/checkpoints") == []
