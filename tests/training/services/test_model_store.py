"""Model versions in the store: published at registration, loaded on a host that never saw the original folder."""

from __future__ import annotations

import shutil

import pytest

from training.services import model_version_local_path, model_version_register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_queues")]


def test_a_local_folder_is_published_and_loads_on_another_host(artifacts, tiny_model_path, tmp_path, settings):
    from dpo_engine.models import load_model

    original = shutil.copytree(tiny_model_path, tmp_path / "mine")
    version = model_version_register(name="mine+dpo1", path=str(original))
    assert version.path == str(original)
    assert version.store_url == f"{artifacts.url}/models/mine-dpo1-{version.content_hash[:12]}"
    shutil.rmtree(original)
    settings.DUET_CACHE = tmp_path / "host-b-cache"  # another host: an empty cache, no original folder

    seen: list[tuple[int, int]] = []
    local = model_version_local_path(version, progress=lambda done, total: seen.append((done, total)))
    assert local == str(tmp_path / "host-b-cache" / version.content_hash)
    assert seen[-1][0] == seen[-1][1] > 0
    assert load_model(local).config.num_hidden_layers == 2


def test_the_same_weights_are_published_once(artifacts, tiny_model_path):
    first = model_version_register(name="a", path=str(tiny_model_path))
    second = model_version_register(name="a2", path=str(tiny_model_path))
    assert first.content_hash == second.content_hash
    assert len(artifacts.store.list_dirs("models")) == 2  # one folder per name, each holding the same content


def test_a_published_ref_is_recorded_as_is(artifacts, tiny_model_path):
    ref = artifacts.store.put_dir(tiny_model_path, "runs/train-1/final")
    version = model_version_register(name="trained", path="/worker-a/var/runs/train-1/final", ref=ref)
    assert (version.store_url, version.content_hash) == (ref.uri, ref.content_hash)
    assert model_version_local_path(version) == str(artifacts.cache / ref.content_hash)


def test_a_hub_id_stays_as_given(file_artifacts):
    from training.models import ModelVersion

    version = ModelVersion.objects.create(name="hub", path="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert model_version_local_path(version) == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.timeout(300)
def test_a_worker_generates_with_a_version_it_knows_only_from_the_store(
    s3_artifacts, tiny_model_path, tmp_path, worker, wait_for
):
    from tests.annotate.factories import PromptFactory
    from training import services
    from training.models import RunStatus

    original = shutil.copytree(tiny_model_path, tmp_path / "gone-after-registration")
    version = model_version_register(name="stored", path=str(original))
    shutil.rmtree(original)
    PromptFactory.create_batch(2)
    run = services.generation_run_start(model_version=version, n=2, max_new_tokens=4, temperature=1.0)
    worker.start(burst=True, env={**s3_artifacts.env, "DUET_CACHE": str(tmp_path / "worker-cache")})
    wait_for(lambda: run.__class__.objects.get(pk=run.pk).status in (RunStatus.SUCCEEDED, RunStatus.FAILED))
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.traceback or worker.output()
    assert (tmp_path / "worker-cache" / version.content_hash / "config.json").exists()
