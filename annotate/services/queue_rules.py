"""Who may be served a campaign's cards: the rules ``lease_take`` applies before it leases anything.

One home for them: the queue, the campaign list and the API all ask here. The checks read the
campaign row the caller already holds and, only where the campaign needs it, one more query
(named users, a group, an open flag), so the everyday campaign (active, open to everyone, not
pausing flagged annotators) costs the hot path nothing.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from annotate.models import AnnotatorFlag, Campaign, CampaignAccess, CampaignStatus


class QueueRefused(Exception):
    """No card for this annotator in this campaign; ``reason`` is for programs, ``message`` for people."""

    REASONS = ("paused", "closed", "forbidden", "flagged")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _may_access(*, annotator: User, campaign: Campaign) -> bool:
    if campaign.access == CampaignAccess.EVERYONE:
        return True
    if campaign.access == CampaignAccess.USERS:
        return campaign.users.filter(pk=annotator.pk).exists()
    return campaign.group_id is not None and annotator.groups.filter(pk=campaign.group_id).exists()


def queue_check(*, annotator: User, campaign: Campaign) -> None:
    """Raise ``QueueRefused`` unless ``annotator`` may be served cards of ``campaign`` now.

    Closed comes before paused (a closed campaign stays closed), access before the flag (a stranger
    learns nothing about flags).
    """
    if campaign.status == CampaignStatus.CLOSED:
        raise QueueRefused("closed", f"The campaign “{campaign.name}” is closed: it serves no more cards.")
    if campaign.status == CampaignStatus.PAUSED:
        raise QueueRefused("paused", f"The campaign “{campaign.name}” is paused: try again later.")
    if not _may_access(annotator=annotator, campaign=campaign):
        raise QueueRefused("forbidden", f"You are not among the annotators of the campaign “{campaign.name}”.")
    if campaign.pause_flagged and AnnotatorFlag.objects.filter(
        campaign=campaign, annotator=annotator, cleared_at__isnull=True
    ).exists():
        raise QueueRefused("flagged", "Your queue is paused: contact staff.")
