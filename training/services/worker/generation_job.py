"""The worker's side of a generation round: sample, store with lineage, open comparisons."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from annotate import services as annotate_services
from annotate.models import Completion, Prompt
from training import selectors
from training.models import GenerationRun, ModelVersion, RunStatus, TrainingRun
from training.services.queueing import GPU_QUEUE, enqueue_after_commit
from training.services.worker.runtime import heartbeat, run_claim, run_finish

# Prompts sampled per engine call: small enough that progress and a cancel are seen every few seconds.
GENERATION_CHUNK = 16


class _Cancelled(Exception):
    pass


def generation_run_execute(*, run_id: int) -> None:
    """Sample the round's prompts, store the completions with their lineage, open their comparisons."""
    if not run_claim(model=GenerationRun, run_id=run_id):
        return
    run = GenerationRun.objects.select_related("model_version__parent").get(pk=run_id)
    try:
        with heartbeat(model=GenerationRun, run_id=run_id):
            completions, comparisons, total = _generate(run)
        run_finish(
            run=run,
            status=RunStatus.SUCCEEDED,
            completions_created=completions,
            comparisons_created=comparisons,
            progress_step=total,
            progress_total=total,
        )
    except _Cancelled:
        run_finish(run=run, status=RunStatus.CANCELLED, error="cancelled from the page")
    except Exception as exc:
        run_finish(run=run, status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc())
        raise


def _generate(run: GenerationRun) -> tuple[int, int, int]:
    """Returns how many completions and comparisons were created, and the prompts sampled."""
    version = run.model_version
    prompts = selectors.generation_prompts(run=run)
    if not prompts:
        raise ValueError("no prompts match this round's selection")
    parent = version.parent if run.pairing == GenerationRun.Pairing.PARENT else None
    existing: dict[int, Completion] = selectors.first_completions(version=parent, prompts=prompts) if parent else {}
    missing_parent = [p for p in prompts if parent is not None and p.id not in existing]
    total = len(prompts) + len(missing_parent)
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        GenerationRun.objects.filter(pk=run.pk).update(
            progress_step=done, progress_total=total, heartbeat_at=timezone.now()
        )

    progress(0)
    new = _sample(run, version, prompts, run.n, progress)
    if parent is not None and missing_parent:
        for prompt_id, samples in _sample(run, parent, missing_parent, 1, progress).items():
            existing[prompt_id] = annotate_services.completions_add(completions=samples)[0]
    pairs: list[tuple[Completion, Completion]] = []
    created = 0
    for prompt in prompts:
        stored = annotate_services.completions_add(completions=new[prompt.id])
        created += len(stored)
        if parent is not None:
            pairs.extend((existing[prompt.id], c) for c in stored)
        else:
            pairs.extend(zip(stored[0::2], stored[1::2], strict=False))
    comparisons = annotate_services.comparisons_create(
        pairs=pairs, source=f"generation-{run.pk}", purpose=run.purpose
    )
    return created, comparisons, total


def _sample(
    run: GenerationRun, version: ModelVersion, prompts: list[Prompt], n: int, progress: Callable[[int], None]
) -> dict[int, list[annotate_services.NewCompletion]]:
    """``n`` completions of ``version`` per prompt, in chunks so that progress and cancel are seen."""
    from dpo_engine.generate import generate
    from dpo_engine.models import load_model, load_tokenizer

    model = load_model(version.path)
    tokenizer = load_tokenizer(version.path)
    out: dict[int, list[annotate_services.NewCompletion]] = {}
    for start in range(0, len(prompts), GENERATION_CHUNK):
        if GenerationRun.objects.filter(pk=run.pk, cancel_requested=True).exists():
            raise _Cancelled
        chunk = prompts[start : start + GENERATION_CHUNK]
        results = generate(
            model,
            tokenizer,
            [p.messages for p in chunk],
            n=n,
            temperature=run.temperature,
            top_p=run.top_p,
            max_new_tokens=run.max_new_tokens,
            seed=run.seed + start,
        )
        for prompt, samples in zip(chunk, results, strict=True):
            out[prompt.id] = [
                annotate_services.NewCompletion(
                    prompt_id=prompt.id,
                    text=sample.text,
                    model_name=version.name,
                    model_version_id=version.pk,
                    generation=_lineage(run, version, index, sample),
                )
                for index, sample in enumerate(samples)
            ]
        progress(len(chunk))
    return out


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
