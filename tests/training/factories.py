from __future__ import annotations

from collections.abc import Collection

from annotate import services
from annotate.models import Comparison, Completion
from tests.annotate.factories import ComparisonFactory, CompletionFactory, PromptFactory, UserFactory
from training.models import ModelVersion

# Settings that train the tiny test model in seconds, with a checkpoint at every step to resume from.
FAST = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "warmup_steps": 0,
    "batch_size": 2,
    "grad_accum": 1,
    "epochs": 2,
    "max_length": 128,
    "max_prompt_length": 64,
    "save_every": 1,
}


def judged_preferences(
    count: int, *, good: str = "Sure, here it is.", bad: str = "No.", reversed_at: Collection[int] = ()
) -> list[Comparison]:
    """``count`` comparisons, each judged once in favour of the ``good`` answer (the ``bad`` one at the
    positions in ``reversed_at``), in id order, which is the order of a frozen dataset's rows."""
    user = UserFactory()
    comparisons = []
    for index in range(count):
        prompt = PromptFactory()
        comparison = ComparisonFactory(
            prompt=prompt,
            completion_a=CompletionFactory(prompt=prompt, text=good),
            completion_b=CompletionFactory(prompt=prompt, text=bad),
        )
        services.judgement_record_scripted(
            annotator=user,
            comparison_id=comparison.id,
            left_id=comparison.completion_a_id,
            right_id=comparison.completion_b_id,
            choice="right" if index in reversed_at else "left",
        )
        comparisons.append(comparison)
    return comparisons


def completion_of(version: ModelVersion, prompt) -> Completion:  # type: ignore[no-untyped-def]
    return CompletionFactory(prompt=prompt, model_name=version.name, model_version=version)
