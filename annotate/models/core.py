"""Prompts, completions, comparisons between two completions, and people's judgements of them.

Texts are stored as chat messages (``[{"role", "content"}]``) so that multi-turn prompts and
TRL's conversational format round-trip; a completion's ``text`` is its assistant content.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotate.limits import ADJUDICATION_NOTE_MAX_CHARS, REASON_MAX_CHARS
from annotate.models.campaigns import default_campaign_id


class Prompt(models.Model):
    messages = models.JSONField(help_text="Chat messages, the last one from the user.")
    content_hash = models.CharField(max_length=64, unique=True)
    external_id = models.CharField(max_length=200, blank=True, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Prompt {self.pk}"

    @property
    def last_user_text(self) -> str:
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""


class Completion(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    messages = models.JSONField(help_text="The assistant's reply as chat messages.")
    text = models.TextField()
    content_hash = models.CharField(max_length=64, unique=True)
    model_name = models.CharField(
        max_length=200, blank=True, db_index=True, help_text="A label: the version's name, or an imported file's."
    )
    # Named by app label, not imported: the schema points at training's versions, the code does not.
    model_version = models.ForeignKey(
        "training.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="completions",
        help_text="The version that generated it; empty for imported completions.",
    )
    generation = models.JSONField(
        default=dict, blank=True, help_text="Lineage: model version, sampling settings, round."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Completion {self.pk}"


class Purpose(models.TextChoices):
    """What a comparison's judgements are for: teaching a model, or measuring one (never trained on)."""

    TRAINING = "training", "Training"
    EVALUATION = "evaluation", "Evaluation"


class Outcome(models.TextChoices):
    """What a comparison came to, named by completion rather than by the side an annotator saw it on."""

    A = "a", "Completion A"
    B = "b", "Completion B"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


class Comparison(models.Model):
    """Two completions of one prompt, open until ``judgement_count`` reaches ``target_judgements``.

    A staff adjudication (``adjudicated_outcome``, blank for none) overrides the majority of its
    judgements wherever a decision is read (``annotate.selectors.decide``).
    """

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    completion_a = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    completion_b = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    content_hash = models.CharField(max_length=64)
    target_judgements = models.PositiveSmallIntegerField(default=1)
    judgement_count = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=300, blank=True)
    tags = models.JSONField(default=list, blank=True)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.TRAINING, db_index=True)
    campaign = models.ForeignKey(
        "annotate.Campaign", default=default_campaign_id, on_delete=models.PROTECT, related_name="comparisons"
    )
    gold_outcome = models.CharField(
        max_length=10,
        choices=Outcome.choices,
        blank=True,
        default="",
        help_text="The expected outcome of a gold (attention-check) item; blank for an ordinary comparison. "
        "Gold items are mixed into queues at the campaign's rate and never reach a training export.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    adjudicated_outcome = models.CharField(
        max_length=10, choices=Outcome.choices, blank=True, default="", help_text="Blank: not adjudicated."
    )
    adjudicated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    adjudicated_at = models.DateTimeField(null=True, blank=True)
    adjudication_note = models.CharField(max_length=ADJUDICATION_NOTE_MAX_CHARS, blank=True, default="")

    class Meta:
        ordering = ["id"]
        # The queue's two picks (``annotate.services.queue``), each reading one campaign's items of
        # one kind in id order: open ordinary comparisons, and gold items (open to everyone, once).
        indexes = [
            models.Index(
                fields=["campaign", "id"],
                name="comparison_open_idx",
                condition=Q(judgement_count__lt=models.F("target_judgements"), gold_outcome=""),
            ),
            models.Index(
                fields=["campaign", "id"],
                name="comparison_gold_idx",
                condition=~Q(gold_outcome=""),
            ),
        ]
        constraints = [
            # The same pair may be asked in two campaigns (another question, other people), once in each.
            models.UniqueConstraint(fields=["campaign", "content_hash"], name="comparison_once_per_campaign"),
            models.CheckConstraint(
                condition=Q(judgement_count__lte=models.F("target_judgements")), name="comparison_not_overfilled"
            ),
            models.CheckConstraint(
                condition=~Q(completion_a=models.F("completion_b")), name="comparison_two_completions"
            ),
        ]

    def __str__(self) -> str:
        return f"Comparison {self.pk}"


class Assignment(models.Model):
    """One annotator's view of one comparison: the side order they saw, and a lease while open.

    A live lease (not judged, not skipped, not expired) holds one of the comparison's slots so
    that ``k`` annotators at most work on it at once, and is the only thing a vote is accepted
    for. An annotator has one open assignment at most (the database refuses a second), so no one
    holds more than one slot of the whole queue.
    """

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    left = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    judged_at = models.DateTimeField(null=True, blank=True)
    skipped_at = models.DateTimeField(null=True, blank=True)
    undone_at = models.DateTimeField(
        null=True, blank=True, help_text="When the annotator last took back their judgement of it."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["comparison", "annotator"], name="assignment_once_per_annotator"),
            models.UniqueConstraint(
                fields=["annotator"],
                condition=Q(judged_at__isnull=True, skipped_at__isnull=True),
                name="assignment_one_open_per_annotator",
            ),
        ]
        indexes = [
            models.Index(
                fields=["comparison", "expires_at"],
                name="assignment_live_idx",
                condition=Q(judged_at__isnull=True, skipped_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"Assignment of comparison {self.comparison_id} to user {self.annotator_id}"


class Judgement(models.Model):
    class Choice(models.TextChoices):
        LEFT = "left", "Left is better"
        RIGHT = "right", "Right is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both are bad"

    class Strength(models.TextChoices):
        SLIGHTLY = "slightly", "Slightly better"
        CLEARLY = "clearly", "Clearly better"
        MUCH = "much", "Much better"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgements")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="judgements"
    )
    source = models.CharField(max_length=300, help_text="'human', or the file a judgement was imported from.")
    # db_default too: the judging hot path's single-statement INSERT names its columns and not this one.
    import_hash = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        db_index=True,
        help_text="SHA-256 of the bytes of the file it was imported from; empty for a person's judgement.",
    )
    left = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="+")
    choice = models.CharField(max_length=10, choices=Choice.choices)
    winner = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    strength = models.CharField(max_length=10, choices=Strength.choices, blank=True)
    reason = models.CharField(max_length=REASON_MAX_CHARS, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set by the training side when a run that trained on this judgement finishes: from then on
    # the run's frozen list names it, so it can no longer be taken back.
    trained_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"],
                condition=Q(annotator__isnull=False),
                name="judgement_once_per_annotator",
            ),
            models.UniqueConstraint(
                fields=["comparison", "source"],
                condition=Q(annotator__isnull=True),
                name="judgement_once_per_source",
            ),
        ]

    def __str__(self) -> str:
        return f"Judgement {self.pk}: {self.choice}"


def new_token_key() -> str:
    """A new API token: 32 random bytes, URL-safe.

    Never one that starts with "-": its prefix is typed after ``api_token --revoke``, where argparse
    would read it as an option. Skipping those costs 1/64 of the first character's choices.
    """
    while (key := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return key


# Migration 0001 names the old plaintext field's default by this name.
_new_token = new_token_key

# Enough of a token to tell a user's few tokens apart, far too little to guess the rest (256 bits).
TOKEN_PREFIX_CHARS = 8


def token_digest(key: str) -> str:
    """What is stored of an API token: its sha256. A token has 256 random bits, so a plain hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the JSON API, kept only as its digest: the token itself is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    digest = models.CharField(max_length=64, unique=True)
    # The token's first characters, so that its owner can tell which one to revoke.
    prefix = models.CharField(max_length=TOKEN_PREFIX_CHARS)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"API token {self.prefix}… of user {self.user_id}"


class AuditAction(models.TextChoices):
    """The staff actions that leave an audit line."""

    PROMPTS_IMPORT = "prompts_import", "Imported prompts"
    PAIRS_IMPORT = "pairs_import", "Imported pairs"
    EXPORT = "export", "Exported preferences"
    TRAINING_START = "training_start", "Started a training run"
    TRAINING_CANCEL = "training_cancel", "Cancelled a training run"
    TRAINING_RESUME = "training_resume", "Resumed a training run"
    GENERATION_START = "generation_start", "Started a generation run"
    GENERATION_CANCEL = "generation_cancel", "Cancelled a generation run"
    UNFLAG = "unflag", "Unflagged"
    TOKEN_CREATE = "token_create", "Created an API token"
    TOKEN_ROTATE = "token_rotate", "Rotated API tokens"
    TOKEN_REVOKE = "token_revoke", "Revoked an API token"
    ADJUDICATE = "adjudicate", "Adjudicated a comparison"
    CAMPAIGN_CREATE = "campaign_create", "Created a campaign"
    CAMPAIGN_UPDATE = "campaign_update", "Changed a campaign"
    GOLD_MARK = "gold_mark", "Marked a comparison as gold"


class AuditEntry(models.Model):
    """Who did what to which object, and when. Written by ``annotate.services.audit``, never edited."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so a line still says who after the account is deleted, and names the OS user
    # of a command or worker that acted without a signed-in user.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=32, choices=AuditAction.choices, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.target_label}".strip()


class LoginFailure(models.Model):
    """One failed sign-in, counted per username and per address by the login throttle."""

    username = models.CharField(max_length=150, db_index=True)
    ip = models.GenericIPAddressField(null=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"failed sign-in as {self.username!r} from {self.ip}"


class ExportJob(models.Model):
    """A preference export too large to write inside a web request: a worker on the ``default`` queue writes it
    and publishes it into the artifact store."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    fmt = models.CharField(max_length=16)
    conversational = models.BooleanField(default=False)
    filters = models.JSONField(default=dict, help_text="The JudgementFilter, as JudgementFilter.to_json() writes it.")
    rows_expected = models.PositiveIntegerField(default=0, help_text="Comparisons with matching judgements: at most.")
    rows_written = models.PositiveIntegerField(default=0)
    path = models.CharField(
        max_length=500, blank=True,
        help_text="The finished file's artifact-store URI (exports/<id>/<name>); a local path for older jobs.",
    )
    error = models.TextField(blank=True)
    rq_job_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"export {self.pk}"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)
