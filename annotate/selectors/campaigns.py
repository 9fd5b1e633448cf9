"""The campaigns an annotator may work on, their progress in each, and whether they have read its guidelines."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User

from annotate.models import Campaign, CampaignStatus, GuidelinesSeen
from annotate.selectors.progress import annotator_progress
from annotate.services.queue_rules import campaign_access_q


@dataclass(frozen=True)
class CampaignProgress:
    """One campaign as the annotator's list shows it."""

    campaign: Campaign
    judged: int
    remaining: int


def campaigns_open_to(*, annotator: User) -> list[Campaign]:
    """The campaigns the annotator may work on (their access rule lets them in), active or paused; oldest first.

    Closed campaigns are left out: they serve no more cards. A paused one stays listed so the
    annotator learns why it serves none.
    """
    return list(
        Campaign.objects.filter(campaign_access_q(annotator=annotator))
        .exclude(status=CampaignStatus.CLOSED)
        .distinct()
        .order_by("id")
    )


def campaign_progress(*, annotator: User, campaign: Campaign) -> CampaignProgress:
    """The annotator's judgements in ``campaign`` and the ordinary judgements it still wants from them at most."""
    progress = annotator_progress(annotator=annotator, campaign=campaign)
    return CampaignProgress(campaign=campaign, judged=progress.judged_total, remaining=progress.remaining)


def guidelines_seen(*, annotator: User, campaign: Campaign) -> bool:
    """Whether the annotator has been shown the campaign's guidelines (a campaign without any counts as seen)."""
    if not campaign.guidelines.strip():
        return True
    return GuidelinesSeen.objects.filter(annotator=annotator, campaign=campaign).exists()
