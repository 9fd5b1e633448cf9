"""Creating and changing campaigns, and finding the one a write targets."""

from __future__ import annotations

import functools

from django.contrib.auth.models import User
from django.db import connection, transaction

from annotate.limits import DEFAULT_CAMPAIGN_SLUG
from annotate.models import Campaign, GuidelinesSeen


class CampaignNotFound(ValueError):
    """A campaign slug that names no campaign; the message names it."""


@functools.cache
def _by_slug_sql() -> str:
    return f"SELECT * FROM {connection.ops.quote_name(Campaign._meta.db_table)} WHERE slug = %s"  # noqa: S608


def _campaign_by_slug(slug: str) -> Campaign | None:
    """The campaign of ``slug``, or None. Raw SQL: every card served looks its campaign up, and building the
    ORM's query cost several times the lookup itself (``bench.annotate_load``)."""
    return next(iter(Campaign.objects.raw(_by_slug_sql(), [slug])), None)


def campaign_default() -> Campaign:
    """The default campaign, created on first use (a fresh or flushed database may lack it)."""
    campaign = _campaign_by_slug(DEFAULT_CAMPAIGN_SLUG)
    if campaign is None:
        campaign, _ = Campaign.objects.get_or_create(slug=DEFAULT_CAMPAIGN_SLUG, defaults={"name": "Default"})
    return campaign


def campaign_resolve(*, slug: str | None) -> Campaign:
    """The campaign a write targets: the one named by ``slug``, or the default one when none is named."""
    if not slug:
        return campaign_default()
    campaign = _campaign_by_slug(slug)
    if campaign is None:
        known = ", ".join(Campaign.objects.values_list("slug", flat=True)[:20]) or "none"
        raise CampaignNotFound(f"no campaign with slug {slug!r} (known: {known})")
    return campaign


def campaign_prompts_add(*, campaign: Campaign, prompt_ids: list[int]) -> None:
    """Make prompts part of a campaign (generation rounds for it draw from them); already there is fine."""
    through = Campaign.prompts.through
    with transaction.atomic():
        through.objects.bulk_create(
            [through(campaign_id=campaign.pk, prompt_id=pk) for pk in prompt_ids], ignore_conflicts=True
        )


def guidelines_mark_seen(*, annotator: User, campaign: Campaign) -> None:
    """Remember that the annotator has been shown the campaign's guidelines; marking twice keeps the first time."""
    GuidelinesSeen.objects.get_or_create(annotator=annotator, campaign=campaign)
