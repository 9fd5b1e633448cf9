"""Evaluation rounds: a version against its parent on the prompts kept for evaluation, judged, never trained on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from annotate.models import Campaign, Purpose
from annotate.selectors import prompts_tagged
from training.models import GenerationRun, ModelVersion
from training.services.control import generation_run_start


def evaluation_round_start(
    *,
    model_version: ModelVersion,
    user: User | None = None,
    max_prompts: int | None = None,
    campaign: Campaign | None = None,
    **sampling: Any,
) -> GenerationRun:
    """Queue ``model_version``'s answers to the prompts tagged ``DUET_EVAL_TAG``, each paired with its parent's.

    The comparisons join the annotators' queue marked as evaluation: left out of training exports, counted in the
    leaderboard's win rate against the parent. Raises ``ValueError`` (before anything is written) when the version
    has no parent or no prompt is kept for evaluation; ``QueueUnavailable`` when Redis is down.
    """
    tag = settings.DUET_EVAL_TAG
    if model_version.parent_id is None:
        raise ValueError(f"{model_version.name} has no parent version: an evaluation round compares a version with it")
    if not prompts_tagged(tag=tag, limit=1):
        raise ValueError(f"no prompts are tagged {tag!r} (DUET_EVAL_TAG): tag held-out prompts on import")
    return generation_run_start(
        model_version=model_version, prompts=GenerationRun.Prompts.TAG, tag=tag,
        pairing=GenerationRun.Pairing.PARENT, purpose=Purpose.EVALUATION, max_prompts=max_prompts, user=user,
        campaign=campaign, **sampling,
    )
