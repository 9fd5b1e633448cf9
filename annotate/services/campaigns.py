"""Creating and changing campaigns, and finding the one a write targets."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction

from annotate.limits import (
    CAMPAIGN_NAME_MAX_CHARS,
    DEFAULT_CAMPAIGN_SLUG,
    GOLD_MIN_MAX,
    GUIDELINES_MAX_CHARS,
    QUESTION_MAX_CHARS,
    RUSHED_SECONDS_MAX,
    TARGET_JUDGEMENTS_MAX,
)
from annotate.models import AuditAction, Campaign, CampaignAccess, CampaignStatus, GuidelinesSeen
from annotate.services.audit import audit_record


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


def guidelines_mark_seen(*, annotator: User, campaign: Campaign) -> None:
    """Remember that the annotator has been shown the campaign's guidelines; marking twice keeps the first time."""
    GuidelinesSeen.objects.get_or_create(annotator=annotator, campaign=campaign)


def campaign_prompts_add(*, campaign: Campaign, prompt_ids: list[int]) -> None:
    """Make prompts part of a campaign (generation rounds for it draw from them); already there is fine."""
    through = Campaign.prompts.through
    with transaction.atomic():
        through.objects.bulk_create(
            [through(campaign_id=campaign.pk, prompt_id=pk) for pk in prompt_ids], ignore_conflicts=True
        )


# Creating and changing -----------------------------------------------------------------------

_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
_SLUG_MAX_CHARS = Campaign._meta.get_field("slug").max_length or 50

UPDATABLE = frozenset(
    {
        "name",
        "question",
        "guidelines",
        "target_judgements",
        "access",
        "users",
        "group",
        "status",
        "gold_rate",
        "gold_threshold",
        "gold_min",
        "pause_flagged",
        "rushed_seconds",
    }
)
"""What ``campaign_update`` may change: everything but the slug, which exports, runs and URLs name."""


class CampaignInvalid(ValueError):
    """A campaign value refused before anything is written; ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _text_check(field: str, value: object, *, max_chars: int, required: bool) -> None:
    if not isinstance(value, str):
        raise CampaignInvalid(field, "must be text")
    if required and not value.strip():
        raise CampaignInvalid(field, "must not be blank")
    if len(value) > max_chars:
        raise CampaignInvalid(field, f"is longer than {max_chars} characters")
    if "\x00" in value:
        raise CampaignInvalid(field, "contains a NUL character")


def _number_check(field: str, value: object, *, low: float, high: float, whole: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or (whole and not isinstance(value, int)):
        raise CampaignInvalid(field, "must be a whole number" if whole else "must be a number")
    if not (low <= value <= high):  # NaN fails this too
        raise CampaignInvalid(field, f"must lie between {low:g} and {high:g}, got {value}")


def _values_check(values: dict[str, Any]) -> None:
    """Raise ``CampaignInvalid`` for the first value of a whole campaign that cannot be stored or makes no sense."""
    _text_check("name", values["name"], max_chars=CAMPAIGN_NAME_MAX_CHARS, required=True)
    _text_check("question", values["question"], max_chars=QUESTION_MAX_CHARS, required=True)
    _text_check("guidelines", values["guidelines"], max_chars=GUIDELINES_MAX_CHARS, required=False)
    _number_check("target_judgements", values["target_judgements"], low=1, high=TARGET_JUDGEMENTS_MAX, whole=True)
    _number_check("gold_rate", values["gold_rate"], low=0, high=1)
    _number_check("gold_threshold", values["gold_threshold"], low=0, high=1)
    _number_check("gold_min", values["gold_min"], low=0, high=GOLD_MIN_MAX, whole=True)
    _number_check("rushed_seconds", values["rushed_seconds"], low=0, high=RUSHED_SECONDS_MAX)
    if not isinstance(values["pause_flagged"], bool):
        raise CampaignInvalid("pause_flagged", "must be true or false")
    if values["status"] not in CampaignStatus.values:
        raise CampaignInvalid("status", f"must be one of {', '.join(CampaignStatus.values)}")
    access = values["access"]
    if access not in CampaignAccess.values:
        raise CampaignInvalid("access", f"must be one of {', '.join(CampaignAccess.values)}")
    if access == CampaignAccess.USERS and not values["users"]:
        raise CampaignInvalid("users", "name at least one user when access is limited to named users")
    if access == CampaignAccess.GROUP and values["group"] is None:
        raise CampaignInvalid("group", "name a group when access is limited to a group")


def _actor_check(actor: User | None) -> None:
    """Only staff shape campaigns; ``None`` is a command run by whoever holds the server."""
    if actor is not None and not actor.is_staff:
        raise PermissionDenied("only staff may create or change campaigns")


def campaign_create(
    *,
    slug: str,
    name: str,
    question: str = "Which answer is better?",
    guidelines: str = "",
    target_judgements: int | None = None,
    access: str = CampaignAccess.EVERYONE,
    users: Sequence[User] = (),
    group: Group | None = None,
    gold_rate: float = 0.1,
    gold_threshold: float = 0.7,
    gold_min: int = 5,
    pause_flagged: bool = False,
    rushed_seconds: float | None = None,
    actor: User | None,
) -> Campaign:
    """A new active campaign; ``CampaignInvalid`` names the first bad field, and nothing is written then.

    ``target_judgements`` and ``rushed_seconds`` default to the site's settings. One audit line.
    """
    _actor_check(actor)
    if not isinstance(slug, str) or not _SLUG.match(slug) or len(slug) > _SLUG_MAX_CHARS:
        raise CampaignInvalid(
            "slug", f"use up to {_SLUG_MAX_CHARS} letters, digits, hyphens or underscores, got {slug!r}"
        )
    values: dict[str, Any] = {
        "name": name,
        "question": question,
        "guidelines": guidelines,
        "target_judgements": (
            settings.DUET_JUDGEMENTS_PER_COMPARISON if target_judgements is None else target_judgements
        ),
        "access": access,
        "users": list(users),
        "group": group,
        "status": CampaignStatus.ACTIVE,
        "gold_rate": gold_rate,
        "gold_threshold": gold_threshold,
        "gold_min": gold_min,
        "pause_flagged": pause_flagged,
        "rushed_seconds": settings.DUET_RUSHED_SECONDS if rushed_seconds is None else rushed_seconds,
    }
    _values_check(values)
    people = values.pop("users")
    with transaction.atomic():
        if Campaign.objects.filter(slug=slug).exists():
            raise CampaignInvalid("slug", f"a campaign with slug {slug!r} exists already")
        try:
            with transaction.atomic():
                campaign = Campaign.objects.create(slug=slug, **values)
        except IntegrityError as exc:  # a concurrent create of the same slug won the race
            raise CampaignInvalid("slug", f"a campaign with slug {slug!r} exists already") from exc
        campaign.users.set(people)
        audit_record(action=AuditAction.CAMPAIGN_CREATE, target=campaign, detail=_audit_detail(values, people))
    return campaign


def campaign_update(*, campaign: Campaign, actor: User | None, **changes: Any) -> Campaign:
    """Change the fields named in ``changes`` (each in ``UPDATABLE``), checked as a whole campaign first.

    Locks the campaign's row while it reads, checks and writes, so two staff saving at once cannot
    combine into a campaign neither saved (access "users" with the other's empty user list).
    A change of k applies to comparisons added afterwards. One audit line listing what changed.
    """
    _actor_check(actor)
    unknown = sorted(set(changes) - UPDATABLE)
    if unknown:
        raise CampaignInvalid(unknown[0], "cannot be changed (or is no campaign field)")
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        before = {name: getattr(locked, name) for name in UPDATABLE if name not in ("users", "group")}
        before["group"] = locked.group
        before["users"] = list(locked.users.all())
        values = before | {name: list(value) if name == "users" else value for name, value in changes.items()}
        _values_check(values)
        people = values.pop("users")
        for name in changes.keys() - {"users"}:
            setattr(locked, name, values[name])
        locked.save()
        new_people = "users" in changes and {u.pk for u in people} != {u.pk for u in before["users"]}
        if new_people:
            locked.users.set(people)
        # Only what differs: the edit page posts every field, and the audit line should say what changed.
        changed = {name: values[name] for name in changes if name != "users" and values[name] != before[name]}
        detail = _audit_detail(changed, people if new_people else None)
        audit_record(action=AuditAction.CAMPAIGN_UPDATE, target=locked, detail=detail)
    return locked


def _audit_detail(values: dict[str, Any], people: Sequence[User] | None) -> dict[str, Any]:
    """The values as JSON the audit log can hold: a group by name, users by username."""
    detail = {name: (value.name if isinstance(value, Group) else value) for name, value in values.items()}
    if people is not None:
        detail["users"] = sorted(user.get_username() for user in people)
    return detail
