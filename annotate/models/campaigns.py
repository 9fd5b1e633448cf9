"""Campaigns: a task with its own question, guidelines, k, people and quality rules; and flagged annotators."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from annotate.limits import CAMPAIGN_NAME_MAX_CHARS, DEFAULT_CAMPAIGN_SLUG, GUIDELINES_MAX_CHARS, QUESTION_MAX_CHARS


def _k_default() -> int:
    return settings.DUET_JUDGEMENTS_PER_COMPARISON


def _rushed_default() -> float:
    return settings.DUET_RUSHED_SECONDS


def default_campaign_id() -> int:
    """The default campaign's id, created on first use (a flushed test database has none).

    The fallback of ``Comparison.campaign``: code that adds many comparisons names their campaign.
    """
    return Campaign.objects.get_or_create(slug=DEFAULT_CAMPAIGN_SLUG, defaults={"name": "Default"})[0].pk


class CampaignStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused (no cards served)"
    CLOSED = "closed", "Closed"


class CampaignAccess(models.TextChoices):
    EVERYONE = "everyone", "Everyone"
    USERS = "users", "Named users"
    GROUP = "group", "A group"


class Campaign(models.Model):
    """One annotation task. Every comparison belongs to exactly one; prompts may serve several."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=CAMPAIGN_NAME_MAX_CHARS)
    question = models.CharField(max_length=QUESTION_MAX_CHARS, default="Which answer is better?")
    guidelines = models.TextField(
        blank=True, max_length=GUIDELINES_MAX_CHARS, help_text="Markdown, rendered safely; shown on first visit."
    )
    target_judgements = models.PositiveSmallIntegerField(
        default=_k_default, help_text="Judgements wanted per comparison (k) for comparisons added to this campaign."
    )
    access = models.CharField(max_length=10, choices=CampaignAccess.choices, default=CampaignAccess.EVERYONE)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="campaigns")
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.ACTIVE)
    prompts = models.ManyToManyField("annotate.Prompt", blank=True, related_name="campaigns")
    gold_rate = models.FloatField(default=0.1, help_text="Share of cards that are gold items, 0 to 1.")
    gold_threshold = models.FloatField(
        default=0.7, help_text="Gold accuracy below which an annotator is flagged, 0 to 1."
    )
    gold_min = models.PositiveSmallIntegerField(
        default=5, help_text="Gold items an annotator must have answered before the threshold applies."
    )
    pause_flagged = models.BooleanField(
        default=False, help_text="Stop serving cards to a flagged annotator until staff unflag them."
    )
    rushed_seconds = models.FloatField(
        default=_rushed_default, help_text="A vote cast sooner than this after its card was leased counts as rushed."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(gold_rate__gte=0, gold_rate__lte=1), name="campaign_gold_rate_share"),
            models.CheckConstraint(
                condition=Q(gold_threshold__gte=0, gold_threshold__lte=1), name="campaign_gold_threshold_share"
            ),
            models.CheckConstraint(condition=Q(target_judgements__gte=1), name="campaign_k_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class AnnotatorFlag(models.Model):
    """An annotator flagged in a campaign for low gold accuracy; open until staff clear it.

    While open, their judgements in the campaign are left out of exports and training runs by
    default, and the queue pauses for them when the campaign says so. Clearing keeps the row (and
    an audit line); gold answers before ``cleared_at`` no longer count against them.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="flags")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="flags")
    flagged_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=300)
    gold_seen = models.PositiveIntegerField()
    gold_correct = models.PositiveIntegerField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "annotator"], condition=Q(cleared_at__isnull=True), name="flag_one_open"
            )
        ]

    def __str__(self) -> str:
        return f"Flag {self.pk}: annotator {self.annotator_id} in campaign {self.campaign_id}"


class GuidelinesSeen(models.Model):
    """An annotator has been shown a campaign's guidelines: later visits go straight to the cards."""

    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["annotator", "campaign"], name="guidelines_seen_once"),
        ]

    def __str__(self) -> str:
        return f"Guidelines of campaign {self.campaign_id} seen by user {self.annotator_id}"
