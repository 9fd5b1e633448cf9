"""Model versions, and the training and generation runs that make and use them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotate.models import Judgement, Purpose
from training.engine_settings import sampling_default


class ModelVersion(models.Model):
    name = models.CharField(max_length=200, unique=True)
    path = models.CharField(max_length=1000, help_text="Where the weights are: a built-in name, a hub id or a folder.")
    store_url = models.CharField(
        max_length=1000, blank=True, help_text="The weights' folder in the artifact store, when they were published."
    )
    content_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of the store folder's manifest.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    trained_by = models.OneToOneField(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_version"
    )
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def ancestors(self) -> list[ModelVersion]:
        """Parent, grandparent, ... up to the root, nearest first.

        One query for the whole lineage table: versions number in the tens, and a walk by
        ``parent`` would cost a query per generation.
        """
        by_id = ModelVersion.objects.in_bulk()
        chain: list[ModelVersion] = []
        parent_id = self.parent_id
        while parent_id is not None and parent_id in by_id:
            chain.append(by_id[parent_id])
            parent_id = by_id[parent_id].parent_id
        return chain

    @property
    def depth(self) -> int:
        """How many versions the lineage has up to this one: the base is round 1, its child round 2."""
        return 1 + len(self.ancestors())


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class RunBase(models.Model):
    """What training and generation runs share: status, progress, heartbeat, errors, the RQ job."""

    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    eta_seconds = models.FloatField(null=True, blank=True)
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    rq_job_id = models.CharField(max_length=100, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-id"]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def percent(self) -> float:
        if self.status == RunStatus.SUCCEEDED:
            return 100.0
        return 100.0 * self.progress_step / self.progress_total if self.progress_total else 0.0

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        from django.utils import timezone

        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()


class TrainingRun(RunBase):
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="training_runs")
    hyperparameters = models.JSONField(default=dict, help_text="TrainConfig fields that differ from the defaults.")
    out_dir = models.CharField(
        max_length=1000,
        blank=True,
        help_text="The run's folder in the artifact store (its URI): frozen data, checkpoints, metrics.",
    )
    dataset_path = models.CharField(
        max_length=1000, blank=True, help_text="The store URI of the frozen training pairs."
    )
    dataset_sha256 = models.CharField(max_length=64, blank=True)
    dataset_rows = models.PositiveIntegerField(default=0)
    dataset_filters = models.JSONField(default=dict, blank=True)
    judgements = models.ManyToManyField(Judgement, blank=True, related_name="training_runs")
    heldout_path = models.CharField(
        max_length=1000, blank=True, help_text="The store URI of the held-out pairs; empty without any."
    )
    heldout_rows = models.PositiveIntegerField(default=0)
    schedule = models.JSONField(
        default=dict, blank=True, help_text="The settings the run resolved against its data: steps, batch, lr, notes."
    )
    eval_before = models.JSONField(default=dict, blank=True)
    eval_after = models.JSONField(default=dict, blank=True)
    learned = models.BooleanField(
        null=True, blank=True, help_text="Whether held-out accuracy (or, without held-out pairs, the margin) moved."
    )
    verdict = models.TextField(blank=True, help_text="Why the run counts as having learned, or not.")
    resumed_count = models.PositiveSmallIntegerField(default=0)
    processes = models.PositiveSmallIntegerField(
        default=1, help_text="GPUs per run (processes): more than one launches the engine through torchrun."
    )

    class Meta(RunBase.Meta):
        pass

    def __str__(self) -> str:
        return f"Training run {self.pk}"

    @property
    def store_key(self) -> str:
        """The run's folder in the artifact store, relative to its root; every host finds it by the run's id."""
        return f"runs/train-{self.pk}"


class TrainingMetric(models.Model):
    class Split(models.TextChoices):
        TRAIN = "train", "Training step"
        EVAL = "eval", "Held-out evaluation"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    split = models.CharField(max_length=5, choices=Split.choices, default=Split.TRAIN)
    step = models.PositiveIntegerField()
    values = models.JSONField()

    class Meta:
        ordering = ["step"]
        constraints = [models.UniqueConstraint(fields=["run", "split", "step"], name="one_metric_row_per_split_step")]

    def __str__(self) -> str:
        return f"Run {self.run_id} step {self.step}"


class GenerationRun(RunBase):
    class Prompts(models.TextChoices):
        ALL = "all", "All prompts"
        NEW = "new", "Prompts added since a date"
        TAG = "tag", "Prompts with a tag"
        UNPAIRED = "unpaired", "Prompts without an open comparison"

    class Pairing(models.TextChoices):
        PARENT = "parent", "Against the parent version on the same prompt"
        SELF = "self", "Two samples of this version"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="generation_runs")
    purpose = models.CharField(
        max_length=10,
        choices=Purpose.choices,
        default=Purpose.TRAINING,
        help_text="Evaluation rounds pair a version with its parent on held-out prompts; never trained on.",
    )
    prompts = models.CharField(max_length=10, choices=Prompts.choices, default=Prompts.ALL)
    since = models.DateTimeField(null=True, blank=True)
    tag = models.CharField(max_length=100, blank=True)
    pairing = models.CharField(max_length=10, choices=Pairing.choices, default=Pairing.PARENT)
    n = models.PositiveSmallIntegerField(
        default=sampling_default("n"), help_text="Completions per prompt from this version."
    )
    temperature = models.FloatField(default=sampling_default("temperature"))
    top_p = models.FloatField(default=sampling_default("top_p"))
    max_new_tokens = models.PositiveIntegerField(default=sampling_default("max_new_tokens"))
    seed = models.IntegerField(default=sampling_default("seed"))
    max_prompts = models.PositiveIntegerField(null=True, blank=True)
    round = models.PositiveIntegerField(default=1)
    after_training = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="next_generation"
    )
    completions_created = models.PositiveIntegerField(default=0)
    comparisons_created = models.PositiveIntegerField(default=0)
    prompt_ids = models.JSONField(
        default=list,
        blank=True,
        help_text="The prompts the round answers, chosen at its first start; a resume keeps them.",
    )
    campaign = models.ForeignKey(
        "annotate.Campaign",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Where the round's comparisons land (the default campaign when empty).",
    )

    class Meta(RunBase.Meta):
        pass

    def __str__(self) -> str:
        return f"Generation run {self.pk}"


class GenerationShard(models.Model):
    """A slice of a generation round's prompts that one worker answers; a round's shards run in parallel.

    A shard's prompts are whole chunks of the round's frozen prompt list, so where a round is cut does
    not change its samples (each chunk's seed comes from its position in that list).
    """

    run = models.ForeignKey(GenerationRun, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField(help_text="Its place among the round's shards; a resume numbers on.")
    prompt_ids = models.JSONField(default=list, help_text="The prompts it answers, in the round's order.")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    prompts_done = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Workers that took it (a lost one counts).")
    worker_name = models.CharField(max_length=200, blank=True)
    host = models.CharField(max_length=200, blank=True)
    rq_job_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="one_shard_per_run_index")]

    def __str__(self) -> str:
        return f"shard {self.index} of generation run {self.run_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED
