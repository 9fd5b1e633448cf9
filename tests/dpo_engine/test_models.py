from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from transformers import AutoTokenizer

from dpo_engine.models import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    default_dtype,
    load_model,
    load_tokenizer,
    model_cache_dir,
    resolve_device,
    resolve_model_path,
)


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache with the hub switched off, so nothing can reach (or wait on) the network."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_resolve_device_defaults_to_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device("auto").type == expected


def test_resolve_device_honours_preference():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_refuses_missing_cuda():
    with pytest.raises(ValueError, match=r"CUDA is not available"):
        resolve_device("cuda")


def test_resolve_device_rejects_unknown_name():
    with pytest.raises(ValueError, match=r"unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_default_dtype_is_float32_on_cpu():
    assert default_dtype(torch.device("cpu")) == torch.float32


def test_model_cache_dir_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DUET_MODEL_CACHE", str(tmp_path / "models"))
    assert model_cache_dir() == tmp_path / "models"
    assert model_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_local_folder_passes_through(tiny_model_dir):
    assert resolve_model_path(str(tiny_model_dir)) == str(tiny_model_dir)


def test_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        resolve_model_path(str(tmp_path))


def test_file_that_is_not_gguf_is_refused(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0")
    with pytest.raises(ModelNotFoundError, match=r"not a \.gguf file"):
        resolve_model_path(str(weights))


def test_missing_path_names_what_was_tried(offline_hub):
    with pytest.raises(ModelNotFoundError, match=r"'\./no/such/model' not found: not a built-in model"):
        resolve_model_path("./no/such/model")


def test_uncached_hub_id_fails_fast_offline(offline_hub):
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=r"'someorg/absent-model' not found.*HF_HUB_OFFLINE"):
        resolve_model_path("someorg/absent-model")
    assert time.monotonic() - start < 5


def test_hub_id_resolves_from_the_hugging_face_cache(offline_hub, tiny_model_dir):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub / "models--someorg--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    path = resolve_model_path("someorg/tiny")
    assert path == str(repo / "snapshots" / commit)
    assert load_model("someorg/tiny", device="cpu").config.hidden_size == 32


def test_corrupt_gguf_leaves_no_half_cache(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"cannot convert GGUF file .*broken\.gguf"):
        resolve_model_path(str(bad), cache_dir=cache)
    assert [p for p in cache.iterdir() if p.is_dir()] == []  # no model, no temp folder


def test_load_model_on_cpu_in_eval_mode(tiny_model_dir):
    model = load_model(str(tiny_model_dir), device="cpu")
    assert model.device.type == "cpu"
    assert model.dtype == torch.float32
    assert not model.training


def test_load_model_honours_dtype(tiny_model_dir):
    assert load_model(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16).dtype == torch.bfloat16


def test_load_tokenizer_pads_with_eos_when_pad_is_missing(tiny_model_dir):
    config_path = tiny_model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("pad_token", None)
    config_path.write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(tiny_model_dir).pad_token is None
    tokenizer = load_tokenizer(str(tiny_model_dir))
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"


@pytest.mark.slow
def test_default_model_converts_once_and_answers_sensibly(tmp_path):
    cache = tmp_path / "models"
    path = resolve_model_path(DEFAULT_MODEL, cache_dir=cache)
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [path.rsplit("/", 1)[-1]]  # no temp folder left
    config = json.loads((cache / path / "config.json").read_text())
    assert "quantization_config" not in config
    stamp = (cache / path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path(DEFAULT_MODEL.upper(), cache_dir=cache) == path
    assert (cache / path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not converted again

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = load_model(path, device="cpu")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
