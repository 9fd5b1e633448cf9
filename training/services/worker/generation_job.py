"""The worker's side of a generation round: plan it into shards, sample each shard, store with lineage.

A round's first job (``generation_run_execute``) loads no model: it freezes the round's prompts and cuts the
ones not answered yet into shards, one RQ job each on the gpu queue, so that every worker listening there
takes a part. A shard's job (``generation_shard_execute``) loads the model(s) once and stores its answers
chunk by chunk; the shard that ends last closes the round (``generation_shards``).
"""

from __future__ import annotations

import itertools
import os
import traceback
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotate import services as annotate_services
from annotate.models import Completion, Prompt
from training import selectors
from training.models import GenerationRun, GenerationShard, ModelVersion, RunStatus, TrainingRun
from training.services import generation_shards as lifecycle  # a module: it imports this package's runtime
from training.services.queueing import GPU_QUEUE, QueueUnavailable, enqueue_after_commit
from training.services.versions import model_version_local_path
from training.services.worker.runtime import beating, log_tail_append, run_claim, run_finish

# Prompts sampled per engine call, and stored per transaction: small enough that progress and a cancel are
# seen every few seconds, and that a killed shard loses at most this many prompts' work. A chunk is also the
# unit of seeding (its seed is its first position in the round's prompt list) and of cutting into shards.
GENERATION_CHUNK = 16


class _Cancelled(Exception):
    pass


class _Lost(Exception):
    """The shard was given to another worker while this one was thought dead: it stores nothing more."""


def generation_run_execute(*, run_id: int) -> None:
    """Plan the round: freeze its prompts, and queue one shard job per slice of the prompts not answered yet.

    A resumed round is planned again over the prompts its earlier attempts did not reach.
    """
    if not run_claim(model=GenerationRun, run_id=run_id):
        return
    run = GenerationRun.objects.get(pk=run_id)
    try:
        _plan(run)
    except QueueUnavailable:
        raise  # the shards that missed the queue are failed, and the round closed, by the enqueue itself
    except Exception as exc:
        run_finish(run=run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc())
        raise


def _plan(run: GenerationRun) -> None:
    prompts = _round_prompts(run)
    done = selectors.generation_prompts_done(run=run)
    gone = set(run.prompt_ids) - {p.id for p in prompts}  # deleted since the round chose them
    groups = _shard_groups(run.prompt_ids, done | gone)
    todo = sum(len(group) for group in groups)
    resumed = f"resumed: {len(prompts) - todo} of {len(prompts)} prompts were done; " if done else ""
    planned = f"{resumed}{todo} prompts in {len(groups)} shard(s) of at most {_shard_prompts()}"
    with transaction.atomic():
        locked = GenerationRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING:
            return  # cancelled while its prompts were chosen
        locked.progress_step, locked.progress_total = len(prompts) - todo, len(prompts)
        locked.log_tail = log_tail_append(locked.log_tail, planned)
        GenerationRun.objects.filter(pk=run.pk).update(
            progress_step=locked.progress_step, progress_total=locked.progress_total, log_tail=locked.log_tail,
            heartbeat_at=timezone.now(),
        )
        lifecycle.generation_shards_create(run=locked, groups=groups)
        lifecycle.round_close_if_done(run=locked)  # nothing was left to answer


def _shard_prompts() -> int:
    """``DUET_GENERATION_SHARD_PROMPTS`` rounded up to whole chunks."""
    chunks = -(-settings.DUET_GENERATION_SHARD_PROMPTS // GENERATION_CHUNK)
    return chunks * GENERATION_CHUNK


def _shard_groups(prompt_ids: list[int], done: set[int]) -> list[list[int]]:
    """The prompts not done, cut at chunk boundaries of the round's list into shards of ``_shard_prompts``."""
    per_shard = _shard_prompts() // GENERATION_CHUNK
    chunks = [
        [p for p in prompt_ids[start : start + GENERATION_CHUNK] if p not in done]
        for start in range(0, len(prompt_ids), GENERATION_CHUNK)
    ]
    chunks = [chunk for chunk in chunks if chunk]
    return [list(itertools.chain(*chunks[i : i + per_shard])) for i in range(0, len(chunks), per_shard)]


def generation_shard_execute(*, shard_id: int) -> None:
    """Answer one shard chunk by chunk, storing each chunk as it lands; skip what an earlier attempt stored."""
    host = settings.DUET_HOST_NAME
    shard = lifecycle.generation_shard_claim(shard_id=shard_id, worker_name=_worker_name(), host=host)
    if shard is None:
        return
    try:
        with beating(lambda: _beat(shard), name=f"heartbeat-shard-{shard_id}"):
            _shard_generate(shard)
        lifecycle.generation_shard_finish(shard=shard, status=RunStatus.SUCCEEDED)
    except _Cancelled:
        lifecycle.generation_shard_finish(shard=shard, status=RunStatus.CANCELLED, error="cancelled from the page")
    except _Lost:
        return
    except Exception as exc:
        lifecycle.generation_shard_finish(
            shard=shard, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
        )
        raise


def _worker_name() -> str:
    from rq import get_current_job

    job = get_current_job()
    return (job.worker_name if job is not None else None) or f"pid {os.getpid()}"


def _beat(shard: GenerationShard) -> None:
    now = timezone.now()
    mine = GenerationShard.objects.filter(pk=shard.pk, status=RunStatus.RUNNING, attempts=shard.attempts)
    if mine.update(heartbeat_at=now):
        GenerationRun.objects.filter(pk=shard.run_id, status=RunStatus.RUNNING).update(heartbeat_at=now)


@dataclass
class _Models:
    """The round's version and, where some prompt lacks a parent answer, its parent: each loaded once."""

    version: ModelVersion
    parent: ModelVersion | None
    loaded: dict[int, tuple[Any, Any]] = field(default_factory=dict)

    def get(self, version: ModelVersion) -> tuple[Any, Any]:
        from dpo_engine.models import load_model, load_tokenizer

        if version.pk not in self.loaded:
            local = model_version_local_path(version)
            self.loaded[version.pk] = (load_model(local), load_tokenizer(local))
        return self.loaded[version.pk]


def _shard_generate(shard: GenerationShard) -> None:
    run = shard.run
    done = selectors.generation_prompts_done(run=run, among=shard.prompt_ids)
    by_id = Prompt.objects.in_bulk(shard.prompt_ids)
    todo = [by_id[p] for p in shard.prompt_ids if p in by_id and p not in done]
    GenerationShard.objects.filter(pk=shard.pk, attempts=shard.attempts).update(
        prompts_done=len(shard.prompt_ids) - len(todo)
    )
    position = {prompt_id: index for index, prompt_id in enumerate(run.prompt_ids)}
    version = run.model_version
    parent = version.parent if run.pairing == GenerationRun.Pairing.PARENT else None
    models = _Models(version=version, parent=parent)
    for chunk_index, group in itertools.groupby(todo, key=lambda p: position[p.id] // GENERATION_CHUNK):
        if GenerationRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
            raise _Cancelled
        # The chunk's first position seeds it whatever the shard: a round's samples do not depend on its cut.
        _chunk_generate(shard, models, list(group), seed=run.seed + chunk_index * GENERATION_CHUNK)


def _round_prompts(run: GenerationRun) -> list[Prompt]:
    """The round's prompts, chosen once at its first start: a resume must not see a selection that its own
    comparisons changed (``unpaired``) or that prompts added since would widen."""
    if not run.prompt_ids:
        selected = selectors.generation_prompts(run=run)
        if not selected:
            raise ValueError("no prompts match this round's selection")
        run.prompt_ids = [p.id for p in selected]
        GenerationRun.objects.filter(pk=run.pk).update(prompt_ids=run.prompt_ids)
        return selected
    by_id = Prompt.objects.in_bulk(run.prompt_ids)
    return [by_id[prompt_id] for prompt_id in run.prompt_ids if prompt_id in by_id]


def _chunk_generate(shard: GenerationShard, models: _Models, chunk: list[Prompt], *, seed: int) -> None:
    """Sample one chunk, then store its completions, comparisons and progress in one transaction, if the
    shard is still this attempt's."""
    run = shard.run
    existing = selectors.first_completions(version=models.parent, prompts=chunk) if models.parent else {}
    missing_parent = [p for p in chunk if models.parent is not None and p.id not in existing]
    new = _sample(run, models, models.version, chunk, run.n, seed)
    parent_new = {}
    if models.parent is not None and missing_parent:
        parent_new = _sample(run, models, models.parent, missing_parent, 1, seed)
    pairs: list[tuple[Completion, Completion]] = []
    created = 0
    with transaction.atomic():
        for prompt_id, samples in parent_new.items():
            existing[prompt_id] = annotate_services.completions_add(completions=samples)[0]
        for prompt in chunk:
            stored = annotate_services.completions_add(completions=new[prompt.id])
            created += len(stored)
            if models.parent is not None:
                pairs.extend((existing[prompt.id], c) for c in stored)
            else:
                pairs.extend(zip(stored[0::2], stored[1::2], strict=False))
        comparisons = annotate_services.comparisons_create(
            pairs=pairs, source=f"generation-{run.pk}", purpose=run.purpose, campaign=run.campaign
        )
        GenerationRun.objects.filter(pk=run.pk).update(
            progress_step=F("progress_step") + len(chunk),
            completions_created=F("completions_created") + created,
            comparisons_created=F("comparisons_created") + comparisons,
            heartbeat_at=timezone.now(),
        )
        mine = GenerationShard.objects.filter(pk=shard.pk, status=RunStatus.RUNNING, attempts=shard.attempts)
        if not mine.update(prompts_done=F("prompts_done") + len(chunk), heartbeat_at=timezone.now()):
            raise _Lost


def _sample(
    run: GenerationRun, models: _Models, version: ModelVersion, prompts: list[Prompt], n: int, seed: int
) -> dict[int, list[annotate_services.NewCompletion]]:
    """``n`` completions of ``version`` per prompt, by prompt id."""
    from dpo_engine.generate import generate

    model, tokenizer = models.get(version)
    results = generate(
        model,
        tokenizer,
        [p.messages for p in prompts],
        n=n,
        temperature=run.temperature,
        top_p=run.top_p,
        max_new_tokens=run.max_new_tokens,
        seed=seed,
    )
    return {
        prompt.id: [
            annotate_services.NewCompletion(
                prompt_id=prompt.id,
                text=sample.text,
                model_name=version.name,
                model_version_id=version.pk,
                generation=_lineage(run, version, index, sample),
            )
            for index, sample in enumerate(samples)
        ]
        for prompt, samples in zip(prompts, results, strict=True)
    }


def _lineage(run: GenerationRun, version: ModelVersion, index: int, sample: Any) -> dict[str, Any]:
    return {
        "model_version": version.name,
        "model_version_id": version.pk,
        "generation_run": run.pk,
        "round": run.round,
        "sample": index,
        "temperature": run.temperature,
        "top_p": run.top_p,
        "max_new_tokens": run.max_new_tokens,
        "seed": run.seed,
        "completion_tokens": sample.completion_tokens,
        "finish_reason": sample.finish_reason,
    }


def follow_up_generations(*, run: TrainingRun, version: ModelVersion | None, reason: str = "") -> None:
    """Start the generation rounds chained to ``run`` with ``version``; without one, cancel them for ``reason``."""
    from training import jobs

    waiting = GenerationRun.objects.filter(after_training=run, status=RunStatus.QUEUED)
    if version is None:
        waiting.update(
            status=RunStatus.CANCELLED,
            finished_at=timezone.now(),
            error=reason or f"its training run {run.pk} did not finish",
        )
        return
    for gen_run in waiting:
        gen_run.model_version = version
        gen_run.round = version.depth
        gen_run.save(update_fields=["model_version", "round"])
        enqueue_after_commit(run=gen_run, job=jobs.generate, queue=GPU_QUEUE)
