"""Which campaigns a person may see."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from annotate.models import Campaign, CampaignAccess


def campaigns_visible(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Campaign]:
    """Every campaign for staff; for anyone else those open to everyone, to them by name, or to a group of theirs.

    Status is not considered: a paused or closed campaign is still theirs to read about.
    """
    campaigns = Campaign.objects.order_by("name", "id")
    if getattr(user, "is_staff", False):
        return campaigns
    if not user.is_authenticated:
        return campaigns.none()
    allowed = (
        Q(access=CampaignAccess.EVERYONE)
        | Q(access=CampaignAccess.USERS, users=user)
        | Q(access=CampaignAccess.GROUP, group__user=user)
    )
    return campaigns.filter(allowed).distinct()
