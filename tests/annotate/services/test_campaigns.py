"""``annotate/services/campaigns.py``: remembering that an annotator has read a campaign's guidelines."""

from __future__ import annotations

import pytest

from annotate import services
from annotate.models import GuidelinesSeen
from tests.annotate.factories import CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_marking_guidelines_seen_twice_keeps_the_first_time():
    user, campaign = UserFactory(), CampaignFactory(guidelines="Be fair.")
    services.guidelines_mark_seen(annotator=user, campaign=campaign)
    first = GuidelinesSeen.objects.get().seen_at
    services.guidelines_mark_seen(annotator=user, campaign=campaign)
    assert list(GuidelinesSeen.objects.values_list("seen_at", flat=True)) == [first]
