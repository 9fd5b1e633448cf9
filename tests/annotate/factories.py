from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from annotate import formats
from annotate.limits import GOLD_TARGET_JUDGEMENTS
from annotate.models import Campaign, Comparison, Completion, Outcome, Prompt


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


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    slug = factory.Sequence(lambda n: f"campaign-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    gold_rate = 0.0


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


class GoldComparisonFactory(ComparisonFactory):
    """A gold item: its expected outcome is completion a; open to every annotator once."""

    gold_outcome = Outcome.A
    target_judgements = GOLD_TARGET_JUDGEMENTS
