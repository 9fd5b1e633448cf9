"""Every read of the annotation app that is more than a lookup by id, one module per concern.

- ``progress``: what an annotator has done and has left; prompts by tag.
- ``decisions``: the one place a ``JudgementFilter`` applies, and how judgements become preference rows.
- ``stats``: counts, pairwise agreement, Krippendorff's alpha, each annotator's reliability.
- ``adjudication``: comparisons whose votes split.
- ``campaigns``: the campaigns a person may see or work on, their progress in each, guidelines seen.
- ``gold``: gold accuracy per annotator, and who is flagged.
- ``campaign_stats``: one campaign's alpha, annotator table (with gold accuracy and flags) and throughput.
- ``accounts``: API tokens, the audit log, the login throttle.

Callers write ``from annotate import selectors`` and ``selectors.judgements_matching(...)``.
"""

from annotate.selectors.accounts import (
    api_tokens_of,
    audit_entries,
    login_retry_after,
)
from annotate.selectors.adjudication import (
    SplitCase,
    SplitComparison,
    Vote,
    comparisons_split,
    split_cases,
)
from annotate.selectors.campaign_stats import (
    CAMPAIGN_CSV_HEADER,
    CAMPAIGN_DEFAULT_SORT,
    CampaignAnnotator,
    CampaignStats,
    Throughput,
    campaign_stats,
    campaign_throughput,
)
from annotate.selectors.campaigns import (
    CampaignProgress,
    campaign_progress,
    campaigns_open_to,
    campaigns_visible,
    guidelines_seen,
)
from annotate.selectors.decisions import (
    EXPORT_CHUNK,
    JUDGEMENT_ROWS_PER_FETCH,
    Decision,
    ExportTally,
    decide,
    export_job,
    export_rows_at_most,
    judgements_matching,
    preference_decisions,
    preference_rows,
)
from annotate.selectors.gold import (
    GoldScore,
    flagged_annotator_ids,
    gold_judgements,
    gold_scores,
    open_flag,
    open_flag_named,
    open_flags,
)
from annotate.selectors.progress import (
    Progress,
    annotator_progress,
    last_judgement,
    prompts_tagged,
)
from annotate.selectors.stats import (
    AnnotationStats,
    AnnotatorStats,
    annotation_stats,
    annotator_reliability,
)

__all__ = [
    "CAMPAIGN_CSV_HEADER",
    "CAMPAIGN_DEFAULT_SORT",
    "EXPORT_CHUNK",
    "JUDGEMENT_ROWS_PER_FETCH",
    "AnnotationStats",
    "AnnotatorStats",
    "CampaignAnnotator",
    "CampaignProgress",
    "CampaignStats",
    "Decision",
    "ExportTally",
    "GoldScore",
    "Progress",
    "SplitCase",
    "SplitComparison",
    "Throughput",
    "Vote",
    "annotation_stats",
    "annotator_progress",
    "annotator_reliability",
    "api_tokens_of",
    "audit_entries",
    "campaign_progress",
    "campaign_stats",
    "campaign_throughput",
    "campaigns_open_to",
    "campaigns_visible",
    "comparisons_split",
    "decide",
    "export_job",
    "export_rows_at_most",
    "flagged_annotator_ids",
    "gold_judgements",
    "gold_scores",
    "guidelines_seen",
    "judgements_matching",
    "last_judgement",
    "login_retry_after",
    "open_flag",
    "open_flag_named",
    "open_flags",
    "preference_decisions",
    "preference_rows",
    "prompts_tagged",
    "split_cases",
]
