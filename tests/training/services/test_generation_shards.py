"""A generation round is cut into shards that several workers take at once, and the last shard closes it.

The first tests run the round's jobs in this process; the rest run them on real RQ workers, each its own
process on this test's private queues, as two GPU hosts would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from annotate.models import Comparison, Completion, Prompt
from tests.annotate.factories import PromptFactory
from tests.conftest import Worker
from training import services
from training.models import GenerationRun, GenerationShard, ModelVersion, RunStatus
from training.services import generation_shards
from training.services.worker import generation_job

pytestmark = pytest.mark.usefixtures("private_queues")

CHUNK = 16  # the worker's GENERATION_CHUNK: a shard is whole chunks


def _round(version: ModelVersion, **fields: Any) -> GenerationRun:
    return GenerationRun.objects.create(
        model_version=version, pairing=GenerationRun.Pairing.SELF, n=2, max_new_tokens=4, temperature=1.0, **fields
    )


def _execute(run_id: int) -> None:
    """The round's jobs one after the other, as one worker would take them: its plan, then each shard."""
    services.generation_run_execute(run_id=run_id)
    queued = GenerationShard.objects.filter(run_id=run_id, status=RunStatus.QUEUED).order_by("index")
    for shard_id in queued.values_list("pk", flat=True):
        services.generation_shard_execute(shard_id=shard_id)


def _samples(run: GenerationRun) -> dict[tuple[int, int], str]:
    rows = Completion.objects.filter(generation__generation_run=run.pk).values_list("prompt_id", "generation", "text")
    return {(prompt_id, generation["sample"]): text for prompt_id, generation, text in rows}


def _closings(run: GenerationRun) -> int:
    run.refresh_from_db()
    return run.log_tail.count("round closed")


# In this process --------------------------------------------------------------------------------------------


def test_a_round_is_cut_into_shards_of_whole_chunks(tiny_version, settings):
    settings.DUET_GENERATION_SHARD_PROMPTS = 20  # rounded up to two chunks
    prompts = [PromptFactory() for _ in range(3 * CHUNK + 1)]
    run = _round(tiny_version)
    services.generation_run_execute(run_id=run.pk)
    shards = list(GenerationShard.objects.filter(run=run).order_by("index"))
    assert [shard.prompt_ids for shard in shards] == [
        [p.pk for p in prompts[: 2 * CHUNK]],
        [p.pk for p in prompts[2 * CHUNK :]],
    ]
    assert {shard.status for shard in shards} == {RunStatus.QUEUED}


def test_a_rounds_samples_do_not_depend_on_how_it_was_cut(tiny_version, settings):
    for _ in range(2 * CHUNK + 3):
        PromptFactory()
    settings.DUET_GENERATION_SHARD_PROMPTS = 1000
    whole = _round(tiny_version)
    _execute(whole.pk)
    settings.DUET_GENERATION_SHARD_PROMPTS = CHUNK
    cut = _round(tiny_version)
    _execute(cut.pk)
    assert (whole.shards.count(), cut.shards.count()) == (1, 3)
    assert _samples(cut) == _samples(whole)
    assert len(_samples(whole)) == 2 * (2 * CHUNK + 3)


def test_two_shards_that_end_together_close_the_round_once(tiny_version):
    """The shard that ends first holds the round's lock until it commits; the other waits for it, then sees it
    ended, and closes the round. Without the lock each would see the other running and neither would close."""
    run = _round(tiny_version, status=RunStatus.RUNNING)
    first, second = (
        generation_shards.generation_shard_claim(
            shard_id=GenerationShard.objects.create(run=run, index=index, prompt_ids=[]).pk, worker_name="w", host="h"
        )
        for index in range(2)
    )
    assert first is not None
    assert second is not None
    second_done = threading.Event()

    def end_second() -> None:
        try:
            generation_shards.generation_shard_finish(shard=second, status=RunStatus.SUCCEEDED)
        finally:
            second_done.set()
            connection.close()

    with transaction.atomic():
        generation_shards.generation_shard_finish(shard=first, status=RunStatus.SUCCEEDED)
        other = threading.Thread(target=end_second)
        other.start()
        assert not second_done.wait(1.5), "the second shard ended without waiting for the first one's lock"
    other.join(timeout=30)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert _closings(run) == 1


def test_a_shard_given_to_another_worker_stores_nothing_more(tiny_version):
    PromptFactory()
    run = _round(tiny_version)
    services.generation_run_execute(run_id=run.pk)
    shard = generation_shards.generation_shard_claim(
        shard_id=GenerationShard.objects.get(run=run).pk, worker_name="lost", host="h"
    )
    assert shard is not None
    # The reaper thought its worker dead and queued it again; another worker took it.
    GenerationShard.objects.filter(pk=shard.pk).update(status=RunStatus.QUEUED)
    assert generation_shards.generation_shard_claim(shard_id=shard.pk, worker_name="new", host="h") is not None
    with pytest.raises(generation_job._Lost):
        generation_job._shard_generate(shard)  # the first worker, still alive, reaches its first chunk
    assert not Completion.objects.filter(generation__generation_run=run.pk).exists()


def test_a_failed_shard_fails_the_round_by_name_and_a_resume_plans_only_its_prompts(tiny_version, settings):
    settings.DUET_GENERATION_SHARD_PROMPTS = CHUNK
    prompts = [PromptFactory() for _ in range(3 * CHUNK)]
    run = _round(tiny_version)
    services.generation_run_execute(run_id=run.pk)
    Prompt.objects.filter(pk=prompts[CHUNK].pk).update(messages=[{"role": "user"}])  # the engine refuses it
    with pytest.raises(ValueError, match="prompt 0"):
        _execute(run.pk)
    for shard_id in GenerationShard.objects.filter(run=run, status=RunStatus.QUEUED).values_list("pk", flat=True):
        services.generation_shard_execute(shard_id=shard_id)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("shard 1: ValueError: prompt 0")
    Prompt.objects.filter(pk=prompts[CHUNK].pk).update(messages=[{"role": "user", "content": "fixed"}])
    services.generation_run_resume(run=run)
    services.generation_run_execute(run_id=run.pk)
    replanned = GenerationShard.objects.filter(run=run).order_by("index")
    assert [(s.index, s.status, len(s.prompt_ids)) for s in replanned] == [
        (0, RunStatus.SUCCEEDED, CHUNK), (2, RunStatus.SUCCEEDED, CHUNK), (3, RunStatus.QUEUED, CHUNK),
    ]
    _execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert len(_samples(run)) == 2 * len(prompts)


def _stale_shard(version: ModelVersion, *, attempts: int) -> GenerationShard:
    run = _round(version, status=RunStatus.RUNNING)
    long_ago = timezone.now() - timedelta(hours=1)
    return GenerationShard.objects.create(
        run=run, index=0, prompt_ids=[1], status=RunStatus.RUNNING, attempts=attempts, heartbeat_at=long_ago
    )


def test_a_shard_whose_worker_went_silent_is_queued_again(tiny_version):
    shard = _stale_shard(tiny_version, attempts=1)
    assert services.runs_reap_stale() == 1
    shard.refresh_from_db()
    assert (shard.status, shard.run.status) == (RunStatus.QUEUED, RunStatus.RUNNING)
    assert shard.rq_job_id, "it went back to the queue"
    assert f"queued again (attempt 2 of {generation_shards.SHARD_ATTEMPTS})" in shard.run.log_tail


def test_a_shard_that_lost_its_last_worker_fails_the_round(tiny_version):
    shard = _stale_shard(tiny_version, attempts=generation_shards.SHARD_ATTEMPTS)
    services.runs_reap_stale()
    shard.refresh_from_db()
    assert shard.status == RunStatus.FAILED
    assert shard.run.status == RunStatus.FAILED
    assert shard.run.error.startswith("shard 0: lost its worker")


# On real workers --------------------------------------------------------------------------------------------


@pytest.fixture
def other_worker(worker: Worker, runs_dir: Path, tmp_path: Path) -> Iterator[Worker]:
    """A second worker on the same private queues, as a second GPU host would be."""
    second = Worker(runs_dir, tmp_path / "worker-b.log")
    yield second
    second.stop()


def _listening(*workers: Worker, wait_for: Any) -> None:
    for w in workers:
        wait_for(lambda w=w: "Listening on" in w.output(), timeout=120, what="a worker to start")


def _finished(run: GenerationRun) -> bool:
    run.refresh_from_db()
    return run.is_finished


def _per_prompt(run: GenerationRun) -> dict[int, int]:
    counts: dict[int, int] = {}
    for prompt_id in Completion.objects.filter(generation__generation_run=run.pk).values_list("prompt_id", flat=True):
        counts[prompt_id] = counts.get(prompt_id, 0) + 1
    return counts


SHARDS_OF_ONE_CHUNK = {"DUET_GENERATION_SHARD_PROMPTS": str(CHUNK)}


@pytest.mark.timeout(300)
def test_two_workers_share_a_round_and_it_closes_once(tiny_version, worker, other_worker, wait_for):
    prompts = [PromptFactory() for _ in range(4 * CHUNK)]
    worker.start(env=SHARDS_OF_ONE_CHUNK)
    other_worker.start(env=SHARDS_OF_ONE_CHUNK)
    _listening(worker, other_worker, wait_for=wait_for)
    run = services.generation_run_start(model_version=tiny_version, pairing="self", n=2, max_new_tokens=4)
    wait_for(lambda: _finished(run), timeout=240, what="the round to finish")
    assert run.status == RunStatus.SUCCEEDED, run.error + worker.output() + other_worker.output()
    shards = list(run.shards.all())
    assert [(s.status, s.prompts_done, s.attempts) for s in shards] == [(RunStatus.SUCCEEDED, CHUNK, 1)] * 4
    assert len({s.worker_name for s in shards}) == 2, "one worker took every shard"
    assert all(s.host for s in shards)
    assert _per_prompt(run) == {p.pk: 2 for p in prompts}
    assert run.comparisons_created == Comparison.objects.filter(source=f"generation-{run.pk}").count() == len(prompts)
    assert (run.progress_step, run.progress_total, run.completions_created) == (len(prompts), len(prompts), 128)
    assert _closings(run) == 1


@pytest.mark.timeout(400)
def test_a_killed_workers_chunks_survive_and_its_shard_goes_to_another(
    tiny_version, worker, other_worker, wait_for, settings
):
    prompts = [PromptFactory() for _ in range(4 * CHUNK)]
    fast_reaping = {"DUET_HEARTBEAT_TIMEOUT": "5", "DUET_GENERATION_SHARD_PROMPTS": str(4 * CHUNK)}
    worker.start(env=fast_reaping)
    run = services.generation_run_start(model_version=tiny_version, pairing="self", n=2, max_new_tokens=4)

    def a_chunk_stored() -> bool:
        return GenerationShard.objects.filter(run=run, status=RunStatus.RUNNING, prompts_done__gte=CHUNK).exists()

    wait_for(a_chunk_stored, timeout=240, what="the first chunk of the shard")
    worker.kill()
    kept = set(Completion.objects.filter(generation__generation_run=run.pk).values_list("pk", flat=True))
    shard = GenerationShard.objects.get(run=run)
    assert shard.status == RunStatus.RUNNING, "killed too late to test"
    assert 0 < len(kept) < 2 * len(prompts), "killed too late to test"
    other_worker.start(env=fast_reaping)
    wait_for(lambda: _finished(run), timeout=300, what="the round to finish on the other worker")
    assert run.status == RunStatus.SUCCEEDED, run.error + other_worker.output()
    shard.refresh_from_db()
    assert shard.attempts == 2
    assert shard.worker_name in other_worker.output()
    assert "lost its worker" in run.log_tail
    assert kept <= set(Completion.objects.filter(generation__generation_run=run.pk).values_list("pk", flat=True))
    assert _per_prompt(run) == {p.pk: 2 for p in prompts}, "a prompt was answered twice, or not at all"
    assert run.comparisons_created == len(prompts)


@pytest.mark.timeout(300)
def test_a_cancel_stops_every_shard(tiny_version, worker, other_worker, wait_for):
    for _ in range(6 * 2 * CHUNK):
        PromptFactory()
    two_chunks = {"DUET_GENERATION_SHARD_PROMPTS": str(2 * CHUNK)}
    worker.start(env=two_chunks)
    other_worker.start(env=two_chunks)
    _listening(worker, other_worker, wait_for=wait_for)
    run = services.generation_run_start(model_version=tiny_version, pairing="self", n=2, max_new_tokens=4)
    wait_for(
        lambda: GenerationShard.objects.filter(run=run, status=RunStatus.RUNNING).count() == 2,
        timeout=240,
        what="both workers to take a shard",
    )
    services.training_run_cancel(run=run)
    assert not GenerationShard.objects.filter(run=run, status=RunStatus.QUEUED).exists()
    wait_for(lambda: _finished(run), timeout=120, what="the round to stop")
    assert run.status == RunStatus.CANCELLED
    statuses = list(run.shards.values_list("status", flat=True))
    assert RunStatus.CANCELLED in statuses
    assert set(statuses) <= {RunStatus.CANCELLED, RunStatus.SUCCEEDED}
    stored = Completion.objects.filter(generation__generation_run=run.pk).count()
    assert stored < 2 * run.progress_total
    time.sleep(3)
    assert Completion.objects.filter(generation__generation_run=run.pk).count() == stored, "a shard went on"
    assert _closings(run) == 1
