"""JSON API for annotation quality (staff): clearing an annotator's flag."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from annotate import selectors, services
from config.auth import StaffBearerToken

router = Router(auth=StaffBearerToken(), tags=["quality"])


class UnflagIn(Schema):
    note: str = ""


class FlagOut(Schema):
    campaign: str
    username: str
    reason: str
    gold_seen: int
    gold_correct: int
    flagged_at: datetime
    cleared_at: datetime | None
    cleared_by: str | None


class QualityErrorOut(Schema):
    detail: str


@router.post(
    "/campaigns/{slug}/annotators/{username}/unflag",
    response={200: FlagOut, 400: QualityErrorOut, 404: QualityErrorOut, 409: QualityErrorOut},
)
def annotator_unflag(request: HttpRequest, slug: str, username: str, payload: UnflagIn | None = None) -> Any:
    """Clear the annotator's open flag in the campaign (an audit line says who); 404 when there is none."""
    flag = selectors.open_flag_named(campaign_slug=slug, username=username)
    if flag is None:
        return 404, {"detail": f"{username!r} has no open flag in campaign {slug!r}"}
    try:
        flag = services.annotator_unflag(
            flag=flag,
            actor=request.user,  # type: ignore[arg-type]
            note=payload.note if payload is not None else "",
        )
    except services.FlagNotOpen as exc:
        return 409, {"detail": str(exc)}
    except services.FlagInvalid as exc:
        return 400, {"detail": str(exc)}
    return 200, {
        "campaign": flag.campaign.slug,
        "username": flag.annotator.get_username(),
        "reason": flag.reason,
        "gold_seen": flag.gold_seen,
        "gold_correct": flag.gold_correct,
        "flagged_at": flag.flagged_at,
        "cleared_at": flag.cleared_at,
        "cleared_by": request.user.get_username(),
    }
