"""campaign_create / campaign_update: checked as a whole campaign first, each bad value named by its field."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

from annotate import services
from annotate.limits import CAMPAIGN_NAME_MAX_CHARS, RUSHED_SECONDS_MAX, TARGET_JUDGEMENTS_MAX
from annotate.models import AuditAction, AuditEntry, Campaign, GuidelinesSeen
from tests.annotate.factories import CampaignFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def _create(**overrides):
    values = {"slug": "helpful", "name": "Helpfulness", "actor": None}
    return services.campaign_create(**(values | overrides))


def test_create_stores_the_values_and_leaves_an_audit_line():
    campaign = _create(question="Which is kinder?", target_judgements=5, gold_rate=0.2, gold_threshold=0.8)
    stored = Campaign.objects.get(slug="helpful")
    assert (stored.pk, stored.question, stored.target_judgements, stored.gold_rate, stored.gold_threshold) == (
        campaign.pk,
        "Which is kinder?",
        5,
        0.2,
        0.8,
    )
    entry = AuditEntry.objects.get(action=AuditAction.CAMPAIGN_CREATE)
    assert (entry.target_id, entry.detail["target_judgements"]) == (str(campaign.pk), 5)


def test_k_defaults_to_the_site_setting(settings):
    settings.DUET_JUDGEMENTS_PER_COMPARISON = 4
    assert _create().target_judgements == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", " "),
        ("name", "x" * (CAMPAIGN_NAME_MAX_CHARS + 1)),
        ("question", ""),
        ("guidelines", "nul \x00 inside"),
        ("target_judgements", 0),
        ("target_judgements", TARGET_JUDGEMENTS_MAX + 1),
        ("gold_rate", 1.5),
        ("gold_threshold", -0.1),
        ("gold_min", -1),
        ("rushed_seconds", RUSHED_SECONDS_MAX + 1),
        ("access", "friends"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field_and_nothing_is_written(field, value):
    with pytest.raises(services.CampaignInvalid) as caught:
        _create(**{field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert not Campaign.objects.filter(slug="helpful").exists()


def test_a_bad_slug_is_refused_naming_the_slug():
    with pytest.raises(services.CampaignInvalid, match=r"^slug: "):
        _create(slug="not a slug")


def test_a_taken_slug_is_refused_naming_the_slug():
    CampaignFactory(slug="helpful")
    with pytest.raises(services.CampaignInvalid, match=r"^slug: .*exists already"):
        _create()


def test_access_by_named_users_needs_a_user():
    with pytest.raises(services.CampaignInvalid, match=r"^users: "):
        _create(access="users")


def test_access_by_group_needs_a_group():
    with pytest.raises(services.CampaignInvalid, match=r"^group: "):
        _create(access="group")


def test_named_users_are_stored():
    ann = UserFactory(username="ann")
    campaign = _create(access="users", users=[ann])
    assert list(campaign.users.all()) == [ann]


def test_a_non_staff_actor_may_not_create():
    with pytest.raises(PermissionDenied):
        _create(actor=UserFactory())
    assert not Campaign.objects.filter(slug="helpful").exists()


def test_update_changes_the_named_fields_and_audits_them():
    campaign = CampaignFactory(gold_rate=0.1)
    services.campaign_update(campaign=campaign, actor=StaffFactory(), gold_rate=0.3, status="paused")
    campaign.refresh_from_db()
    assert (campaign.gold_rate, campaign.status) == (0.3, "paused")
    entry = AuditEntry.objects.get(action=AuditAction.CAMPAIGN_UPDATE)
    assert entry.detail == {"gold_rate": 0.3, "status": "paused"}


def test_update_refuses_the_slug():
    campaign = CampaignFactory(slug="one")
    with pytest.raises(services.CampaignInvalid, match=r"^slug: "):
        services.campaign_update(campaign=campaign, actor=None, slug="two")


def test_update_refuses_a_bad_value_naming_it_and_changes_nothing():
    campaign = CampaignFactory(target_judgements=3)
    with pytest.raises(services.CampaignInvalid, match=r"^target_judgements: "):
        services.campaign_update(campaign=campaign, actor=None, target_judgements=0, name="Renamed")
    campaign.refresh_from_db()
    assert (campaign.target_judgements, campaign.name) != (0, "Renamed")


def test_update_checks_the_whole_campaign_a_group_access_without_a_group_is_refused():
    campaign = CampaignFactory()
    with pytest.raises(services.CampaignInvalid, match=r"^group: "):
        services.campaign_update(campaign=campaign, actor=None, access="group")


def test_update_to_group_access_with_its_group():
    campaign, group = CampaignFactory(), Group.objects.create(name="raters")
    services.campaign_update(campaign=campaign, actor=None, access="group", group=group)
    campaign.refresh_from_db()
    assert (campaign.access, campaign.group) == ("group", group)


def test_update_by_a_non_staff_actor_is_refused():
    with pytest.raises(PermissionDenied):
        services.campaign_update(campaign=CampaignFactory(), actor=UserFactory(), name="Mine")


def test_marking_guidelines_seen_twice_keeps_the_first_time():
    user, campaign = UserFactory(), CampaignFactory(guidelines="Be fair.")
    services.guidelines_mark_seen(annotator=user, campaign=campaign)
    first = GuidelinesSeen.objects.get().seen_at
    services.guidelines_mark_seen(annotator=user, campaign=campaign)
    assert list(GuidelinesSeen.objects.values_list("seen_at", flat=True)) == [first]
