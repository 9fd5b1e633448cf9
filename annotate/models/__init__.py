"""The annotate app's models: the judging data (``core``) and campaigns (``campaigns``)."""

from annotate.models.campaigns import AnnotatorFlag, Campaign, CampaignAccess, CampaignStatus
from annotate.models.core import (
    TOKEN_PREFIX_CHARS,
    ApiToken,
    Assignment,
    AuditAction,
    AuditEntry,
    Comparison,
    Completion,
    ExportJob,
    Judgement,
    LoginFailure,
    Outcome,
    Prompt,
    Purpose,
    _new_token,
    new_token_key,
    token_digest,
)

__all__ = [
    "TOKEN_PREFIX_CHARS",
    "AnnotatorFlag",
    "ApiToken",
    "Assignment",
    "AuditAction",
    "AuditEntry",
    "Campaign",
    "CampaignAccess",
    "CampaignStatus",
    "Comparison",
    "Completion",
    "ExportJob",
    "Judgement",
    "LoginFailure",
    "Outcome",
    "Prompt",
    "Purpose",
    "_new_token",
    "new_token_key",
    "token_digest",
]
