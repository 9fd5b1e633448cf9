"""Which campaigns a person may see or work on, their progress in each, and whether they have read its guidelines."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db.models import Q, QuerySet

from annotate.models import Campaign, CampaignAccess, CampaignStatus, GuidelinesSeen
from annotate.selectors.progress import annotator_progress


@dataclass(frozen=True)
class CampaignProgress:
    """One campaign as the annotator's list shows it."""

    campaign: Campaign
    judged: int
    remaining: int


def campaign_access_q(*, annotator: User) -> Q:
    """A filter on ``Campaign``: the campaigns whose access rule lets ``annotator`` in (status aside)."""
    return (
        Q(access=CampaignAccess.EVERYONE)
        | Q(access=CampaignAccess.USERS, users=annotator)
        | Q(access=CampaignAccess.GROUP, group__in=annotator.groups.all())
    )


def campaigns_visible(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Campaign]:
    """Every campaign for staff; for anyone else those whose access rule lets them in (``campaign_access_q``).

    Status is not considered: a paused or closed campaign is still theirs to read about.
    """
    campaigns = Campaign.objects.order_by("name", "id")
    if getattr(user, "is_staff", False):
        return campaigns
    if not isinstance(user, User):
        return campaigns.none()
    return campaigns.filter(campaign_access_q(annotator=user)).distinct()


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
