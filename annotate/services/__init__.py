"""Every write of the annotation app. Views, commands and the API call these and nothing else.

One module per concern; this package re-exports their public names, so callers write
``from annotate import services`` and ``services.judgement_record(...)``.
"""

from annotate.services.adjudication import AdjudicationInvalid, comparison_adjudicate
from annotate.services.audit import audit_record
from annotate.services.campaigns import (
    CampaignInvalid,
    CampaignNotFound,
    campaign_create,
    campaign_default,
    campaign_prompts_add,
    campaign_resolve,
    campaign_update,
    guidelines_mark_seen,
)
from annotate.services.completions import NewCompletion, comparisons_create, completions_add
from annotate.services.export import EXPORT_FORMATS, ExportResult, export_download, export_preferences
from annotate.services.export_jobs import export_job_execute, export_job_start, export_job_start_if_large
from annotate.services.flags import FlagInvalid, FlagNotOpen, annotator_flag_check, annotator_unflag
from annotate.services.gold import GoldInvalid, comparison_gold_mark, comparisons_gold_mark
from annotate.services.imports import ImportResult, pairs_import, prompts_import
from annotate.services.judging import (
    JudgementConflict,
    JudgementInvalid,
    VoteSaved,
    judgement_record,
    judgement_record_scripted,
    judgement_undo_last,
    judgements_mark_trained,
    vote_insert,
)
from annotate.services.logins import login_failure_record, login_failures_clear
from annotate.services.queue import Card, CardSide, assignment_next, assignment_skip, lease_take
from annotate.services.queue_rules import QueueRefused, queue_check
from annotate.services.users import IssuedToken, annotator_create, api_token_create, api_token_revoke, api_token_rotate

__all__ = [
    "EXPORT_FORMATS",
    "AdjudicationInvalid",
    "CampaignInvalid",
    "CampaignNotFound",
    "Card",
    "CardSide",
    "ExportResult",
    "FlagInvalid",
    "FlagNotOpen",
    "GoldInvalid",
    "ImportResult",
    "IssuedToken",
    "JudgementConflict",
    "JudgementInvalid",
    "NewCompletion",
    "QueueRefused",
    "VoteSaved",
    "annotator_create",
    "annotator_flag_check",
    "annotator_unflag",
    "api_token_create",
    "api_token_revoke",
    "api_token_rotate",
    "assignment_next",
    "assignment_skip",
    "audit_record",
    "campaign_create",
    "campaign_default",
    "campaign_prompts_add",
    "campaign_resolve",
    "campaign_update",
    "comparison_adjudicate",
    "comparison_gold_mark",
    "comparisons_create",
    "comparisons_gold_mark",
    "completions_add",
    "export_download",
    "export_job_execute",
    "export_job_start",
    "export_job_start_if_large",
    "export_preferences",
    "guidelines_mark_seen",
    "judgement_record",
    "judgement_record_scripted",
    "judgement_undo_last",
    "judgements_mark_trained",
    "lease_take",
    "login_failure_record",
    "login_failures_clear",
    "pairs_import",
    "prompts_import",
    "queue_check",
    "vote_insert",
]
