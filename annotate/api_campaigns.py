"""Campaigns in the JSON API: the ones a user may see, creating one (staff), and one campaign's statistics (staff)."""

from __future__ import annotations

from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import HttpRequest
from ninja import Field, Router, Schema

from annotate import selectors, services
from annotate.api import ErrorOut
from annotate.limits import (
    CAMPAIGN_NAME_MAX_CHARS,
    GOLD_MIN_MAX,
    GUIDELINES_MAX_CHARS,
    QUESTION_MAX_CHARS,
    RUSHED_SECONDS_MAX,
    TARGET_JUDGEMENTS_MAX,
)
from config.auth import BearerToken, StaffBearerToken

router = Router(auth=BearerToken(), tags=["campaigns"])


class CampaignOut(Schema):
    slug: str
    name: str
    question: str
    guidelines: str
    target_judgements: int
    access: str
    status: str
    gold_rate: float
    gold_threshold: float
    gold_min: int
    pause_flagged: bool
    rushed_seconds: float


class CampaignIn(Schema):
    slug: str = Field(max_length=50, description="Letters, digits, hyphens or underscores; names it in URLs.")
    name: str = Field(max_length=CAMPAIGN_NAME_MAX_CHARS)
    question: str = Field("Which answer is better?", max_length=QUESTION_MAX_CHARS)
    guidelines: str = Field("", max_length=GUIDELINES_MAX_CHARS, description="Markdown, rendered safely.")
    target_judgements: int | None = Field(None, ge=1, le=TARGET_JUDGEMENTS_MAX, description="k; the site's if null.")
    access: Literal["everyone", "users", "group"] = "everyone"
    users: list[str] = Field(default_factory=list, description="Usernames, with access 'users'.")
    group: str | None = Field(None, description="A group's name, with access 'group'.")
    gold_rate: float = Field(0.1, ge=0, le=1)
    gold_threshold: float = Field(0.7, ge=0, le=1)
    gold_min: int = Field(5, ge=0, le=GOLD_MIN_MAX)
    pause_flagged: bool = False
    rushed_seconds: float | None = Field(None, ge=0, le=RUSHED_SECONDS_MAX, description="The site's if null.")


class CampaignAlphaOut(Schema):
    nominal: float | None
    ordinal: float | None
    interval: dict[str, tuple[float, float] | None] = Field(description="95% bootstrap intervals: nominal, ordinal.")


class CampaignAnnotatorOut(Schema):
    username: str
    judgements: int
    agreement: float | None
    kappa: float | None
    gold_accuracy: float | None
    gold_seen: int
    left_share: float | None
    median_seconds: float | None
    rushed: int
    flagged: bool


class CampaignStatsOut(Schema):
    alpha: CampaignAlphaOut
    annotators: list[CampaignAnnotatorOut]


@router.get("/campaigns", response=list[CampaignOut])
def campaign_list(request: HttpRequest) -> Any:
    """The campaigns open to the caller (by access rule, whatever their status); staff see every one."""
    return list(selectors.campaigns_visible(user=request.user))


@router.post("/campaigns", auth=StaffBearerToken(), response={201: CampaignOut, 400: ErrorOut})
def campaign_create(request: HttpRequest, payload: CampaignIn) -> Any:
    """Create a campaign; a refused value is a 400 whose detail starts with the field's name."""
    values = payload.dict()
    try:
        users = _users(values.pop("users"))
        group = _group(values.pop("group"))
        campaign = services.campaign_create(**values, users=users, group=group, actor=request.user)  # type: ignore[arg-type]
    except services.CampaignInvalid as exc:
        return 400, {"detail": str(exc)}
    return 201, campaign


@router.get("/campaigns/{slug}/stats", auth=StaffBearerToken(), response={200: CampaignStatsOut, 404: ErrorOut})
def campaign_stats(request: HttpRequest, slug: str) -> Any:
    """Alpha (nominal, ordinal, 95% bootstrap intervals) and the annotator table of the stats page, as JSON."""
    try:
        campaign = services.campaign_resolve(slug=slug)
    except services.CampaignNotFound as exc:
        return 404, {"detail": str(exc)}
    stats = selectors.campaign_stats(campaign=campaign)
    alpha = stats.alpha
    return 200, {
        "alpha": {
            "nominal": alpha.nominal,
            "ordinal": alpha.ordinal,
            "interval": {"nominal": alpha.nominal_interval, "ordinal": alpha.ordinal_interval},
        },
        "annotators": stats.annotators,
    }


def _users(names: list[str]) -> list[Any]:
    found = list(get_user_model().objects.filter(username__in=names))
    missing = sorted(set(names) - {user.get_username() for user in found})
    if missing:
        raise services.CampaignInvalid("users", f"no such user: {', '.join(missing)}")
    return found


def _group(name: str | None) -> Group | None:
    if name is None:
        return None
    group = Group.objects.filter(name=name).first()
    if group is None:
        raise services.CampaignInvalid("group", f"no group named {name!r}")
    return group
