from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from annotate import formats
from annotate.models import Comparison, Completion, Prompt


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"annotator{n}")
    password = factory.django.Password("correct-horse-battery")


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    messages = factory.Sequence(lambda n: [{"role": "user", "content": f"Question number {n}?"}])
    content_hash = factory.LazyAttribute(lambda o: formats.content_hash("prompt", o.messages))


class CompletionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Completion

    prompt = factory.SubFactory(PromptFactory)
    text = factory.Sequence(lambda n: f"Answer number {n}.")
    messages = factory.LazyAttribute(lambda o: [{"role": "assistant", "content": o.text}])
    model_name = "test-model"
    content_hash = factory.LazyAttribute(lambda o: formats.content_hash("completion", o.prompt.id, o.text))


class ComparisonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Comparison

    prompt = factory.SubFactory(PromptFactory)
    completion_a = factory.SubFactory(CompletionFactory, prompt=factory.SelfAttribute("..prompt"))
    completion_b = factory.SubFactory(CompletionFactory, prompt=factory.SelfAttribute("..prompt"))
    target_judgements = 1
    content_hash = factory.LazyAttribute(
        lambda o: formats.content_hash("comparison", o.completion_a.id, o.completion_b.id)
    )
