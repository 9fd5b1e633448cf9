"""``evaluate_round``: a version against its parent on the prompts held out for evaluation, queued."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotate.models import Purpose
from tests.annotate.factories import PromptFactory
from training.models import GenerationRun, ModelVersion

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_queues")]


@pytest.fixture
def child() -> ModelVersion:
    parent = ModelVersion.objects.create(name="base", path="/models/base")
    return ModelVersion.objects.create(name="base+dpo1", path="/models/child", parent=parent)


def test_it_queues_an_evaluation_round_against_the_parent_on_the_eval_tagged_prompts(child, settings):
    settings.DUET_EVAL_TAG = "held-out"
    PromptFactory(tags=["held-out"])
    out = StringIO()
    call_command("evaluate_round", "--model", child.name, "--prompts", "5", "--max-new-tokens", "8", stdout=out)
    run = GenerationRun.objects.get()
    assert (run.model_version, run.purpose, run.pairing) == (child, Purpose.EVALUATION, GenerationRun.Pairing.PARENT)
    assert (run.prompts, run.tag, run.max_prompts, run.max_new_tokens) == ("tag", "held-out", 5, 8)
    assert f"evaluation round {run.pk} queued" in out.getvalue()


def test_a_version_without_a_parent_is_refused(child):
    PromptFactory(tags=["eval"])
    with pytest.raises(CommandError, match="has no parent version"):
        call_command("evaluate_round", "--model", "base")
    assert not GenerationRun.objects.exists()


def test_without_prompts_tagged_for_evaluation_nothing_is_queued(child):
    PromptFactory(tags=["train"])
    with pytest.raises(CommandError, match="no prompts are tagged 'eval'"):
        call_command("evaluate_round", "--model", child.name)
    assert not GenerationRun.objects.exists()
