"""A generation round stores each chunk as it lands, keeps it when the round stops, and resumes where it stopped.

The round runs in the test process (its plan, then each shard, as one worker would take them) so that a spy
on the engine's ``generate`` can look at the database between two chunks, or fail a chunk as a killed worker
would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from annotate import services as annotate_services
from annotate.models import Comparison, Completion
from tests.annotate.factories import PromptFactory, UserFactory
from training import services
from training.models import GenerationRun, GenerationShard, ModelVersion, RunStatus
from training.services.worker import generation_job

# resume checks Redis and enqueues: on a Redis database of this test process.
pytestmark = pytest.mark.usefixtures("private_queues")

# The chunk of the worker's round, and of this file: one prompt per chunk, so three prompts make three chunks.
ONE_PROMPT = 1


class EngineSpy:
    """Wraps the engine's ``generate``: records the prompts of each call and runs ``before`` the call."""

    def __init__(self, before: Callable[[int], None] = lambda call: None) -> None:
        self.calls: list[list[Any]] = []
        self.before = before

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from dpo_engine import generate as engine

        real = getattr(engine.generate, "__wrapped__", engine.generate)

        def spy(model: Any, tokenizer: Any, prompts: list[Any], **kwargs: Any) -> Any:
            self.before(len(self.calls))
            self.calls.append(list(prompts))
            return real(model, tokenizer, prompts, **kwargs)

        spy.__wrapped__ = real  # type: ignore[attr-defined]
        monkeypatch.setattr(engine, "generate", spy)


@pytest.fixture
def one_prompt_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generation_job, "GENERATION_CHUNK", ONE_PROMPT)


def _execute(run_id: int) -> None:
    """The round's jobs as the workers would run them, one after the other: its plan, then each shard."""
    services.generation_run_execute(run_id=run_id)
    queued = GenerationShard.objects.filter(run_id=run_id, status=RunStatus.QUEUED).order_by("index")
    for shard_id in queued.values_list("pk", flat=True):
        services.generation_shard_execute(shard_id=shard_id)


def _round(version: ModelVersion, **fields: Any) -> GenerationRun:
    return GenerationRun.objects.create(
        model_version=version, pairing=GenerationRun.Pairing.SELF, n=2, max_new_tokens=4, temperature=1.0, **fields
    )


def _fail_at_call(number: int) -> Callable[[int], None]:
    def before(call: int) -> None:
        if call == number:
            raise RuntimeError("the worker died here")

    return before


def _fail_third_chunk(version: ModelVersion, monkeypatch: pytest.MonkeyPatch) -> GenerationRun:
    run = _round(version)
    EngineSpy(before=_fail_at_call(2)).install(monkeypatch)
    with pytest.raises(RuntimeError, match="the worker died here"):
        _execute(run.pk)
    run.refresh_from_db()
    return run


def _from_another_connection(read: Callable[[], Any]) -> Any:
    """What an annotator's request would see: a thread has a database connection of its own, so it sees only
    what the round has committed."""
    found: list[Any] = []

    def target() -> None:
        try:
            found.append(read())
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return found[0] if found else None


def _answered(run: GenerationRun) -> dict[int, int]:
    """Completions of the round's version per prompt."""
    counts: dict[int, int] = {}
    for prompt_id in Completion.objects.filter(model_version=run.model_version).values_list("prompt_id", flat=True):
        counts[prompt_id] = counts.get(prompt_id, 0) + 1
    return counts


def test_the_first_chunk_is_in_the_annotators_queue_before_the_second_is_sampled(
    tiny_version, one_prompt_chunks, monkeypatch
):
    first = PromptFactory()
    PromptFactory()
    annotator = UserFactory()
    served: list[Any] = []

    def look_at_the_queue(call: int) -> None:
        if call == 1:
            served.append(_from_another_connection(lambda: annotate_services.lease_take(annotator=annotator)))

    EngineSpy(before=look_at_the_queue).install(monkeypatch)
    run = _round(tiny_version)
    _execute(run.pk)
    assert served[0] is not None, "the queue had nothing while the second chunk was sampled"
    assert Comparison.objects.get(pk=served[0].comparison_id).prompt_id == first.pk


def test_a_failed_round_keeps_the_chunks_it_stored(tiny_version, one_prompt_chunks, monkeypatch):
    prompts = [PromptFactory() for _ in range(3)]
    run = _fail_third_chunk(tiny_version, monkeypatch)
    assert run.status == RunStatus.FAILED
    assert _answered(run) == {prompts[0].pk: 2, prompts[1].pk: 2}
    assert (run.progress_step, run.progress_total, run.completions_created) == (2, 3, 4)
    assert Comparison.objects.filter(source=f"generation-{run.pk}").count() == run.comparisons_created == 2


def test_a_cancelled_round_keeps_the_chunks_it_stored(tiny_version, one_prompt_chunks, monkeypatch):
    prompts = [PromptFactory() for _ in range(3)]
    run = _round(tiny_version)

    def cancel_after_the_first(call: int) -> None:
        if call == 1:
            GenerationRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    EngineSpy(before=cancel_after_the_first).install(monkeypatch)
    _execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert _answered(run) == {prompts[0].pk: 2, prompts[1].pk: 2}
    assert run.progress_step == 2


def test_a_resumed_round_answers_only_the_prompts_it_had_not_reached(tiny_version, one_prompt_chunks, monkeypatch):
    prompts = [PromptFactory() for _ in range(3)]
    run = _fail_third_chunk(tiny_version, monkeypatch)
    spy = EngineSpy()
    spy.install(monkeypatch)
    services.generation_run_resume(run=run)
    _execute(run.pk)
    run.refresh_from_db()
    assert spy.calls == [[prompts[2].messages]]
    assert _answered(run) == {p.pk: 2 for p in prompts}
    assert (run.status, run.progress_step, run.progress_total, run.completions_created) == (
        RunStatus.SUCCEEDED, 3, 3, 6
    )


def test_a_resume_keeps_the_prompts_chosen_at_the_first_start(tiny_version, one_prompt_chunks, monkeypatch):
    prompts = [PromptFactory() for _ in range(3)]
    run = _round(tiny_version, prompts=GenerationRun.Prompts.UNPAIRED)
    EngineSpy(before=_fail_at_call(2)).install(monkeypatch)
    with pytest.raises(RuntimeError):
        _execute(run.pk)
    late = PromptFactory()
    EngineSpy().install(monkeypatch)
    run.refresh_from_db()
    services.generation_run_resume(run=run)
    _execute(run.pk)
    run.refresh_from_db()
    assert set(_answered(run)) == {p.pk for p in prompts}, f"prompt {late.pk} came after the round chose its prompts"
    assert run.progress_total == 3


def test_a_campaigns_round_answers_its_prompts_and_its_comparisons_land_there(tiny_version):
    from annotate.services import campaign_prompts_add
    from tests.annotate.factories import CampaignFactory

    campaign = CampaignFactory(target_judgements=2)
    mine = PromptFactory()
    PromptFactory()
    campaign_prompts_add(campaign=campaign, prompt_ids=[mine.pk])
    run = _round(tiny_version, campaign=campaign)
    _execute(run.pk)
    comparisons = Comparison.objects.filter(source=f"generation-{run.pk}")
    assert {(c.prompt_id, c.campaign_id, c.target_judgements) for c in comparisons} == {(mine.pk, campaign.pk, 2)}
