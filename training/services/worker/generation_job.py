"""The worker's side of a generation round: sample, store with lineage, open comparisons."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotate import services as annotate_services
from annotate.models import Completion, Prompt
from training import selectors
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun
from training.services.queueing import GPU_QUEUE, enqueue_after_commit
from training.services.versions import model_version_local_path
from training.services.worker.runtime import heartbeat, run_claim, run_finish, run_log_append

# Prompts sampled per engine call, and stored per transaction: small enough that progress and a cancel are
# seen every few seconds, and that a killed round loses at most this many prompts' work.
GENERATION_CHUNK = 16


class _Cancelled(Exception):
    pass


def generation_run_execute(*, run_id: int) -> None:
    """Sample the round's prompts chunk by chunk, storing each chunk's completions and comparisons as it lands.

    A resumed round answers only the prompts its earlier attempts did not reach.
    """
    if not run_claim(model=GenerationRun, run_id=run_id):
        return
    run = GenerationRun.objects.select_related("model_version__parent").get(pk=run_id)
    try:
        with heartbeat(model=GenerationRun, run_id=run_id):
            _generate(run)
        run_finish(run=run, status=RunStatus.SUCCEEDED)
    except _Cancelled:
        run_finish(run=run, status=RunStatus.CANCELLED, error="cancelled from the page")
    except Exception as exc:
        run_finish(run=run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc())
        raise


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


def _generate(run: GenerationRun) -> None:
    prompts = _round_prompts(run)
    done = selectors.generation_prompts_done(run=run)
    todo = [p for p in prompts if p.id not in done]
    position = {p.id: index for index, p in enumerate(prompts)}
    GenerationRun.objects.filter(pk=run.pk).update(
        progress_step=len(prompts) - len(todo), progress_total=len(prompts), heartbeat_at=timezone.now()
    )
    if done:
        run_log_append(run=run, line=f"resumed: {len(prompts) - len(todo)} of {len(prompts)} prompts were done")
    version = run.model_version
    parent = version.parent if run.pairing == GenerationRun.Pairing.PARENT else None
    models = _Models(version=version, parent=parent)
    for start in range(0, len(todo), GENERATION_CHUNK):
        if GenerationRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
            raise _Cancelled
        chunk = todo[start : start + GENERATION_CHUNK]
        _chunk_generate(run, models, chunk, seed=run.seed + position[chunk[0].id])


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


def _chunk_generate(run: GenerationRun, models: _Models, chunk: list[Prompt], *, seed: int) -> None:
    """Sample one chunk, then store its completions, comparisons and progress in one transaction."""
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
