"""Parsing of the staff's training and generation forms. The rules about the values live in the services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator

from annotate.forms import JudgementFilterForm, start_of_day
from annotate.models import Campaign
from training.engine_settings import form_field, sampling_spec, train_spec
from training.models import GenerationRun, ModelVersion
from training.services.control import MAX_PROMPTS_MAX

# The hyper-parameters the start form offers, in the order shown; the rest keep TrainConfig's defaults.
TRAINING_FIELDS = (
    "loss",
    "beta",
    "label_smoothing",
    "optimizer",
    "lr",
    "warmup_steps",
    "batch_size",
    "grad_accum",
    "epochs",
    "max_length",
    "max_prompt_length",
    "lora_r",
    "lora_alpha",
    "sft_weight",
    "max_grad_norm",
    "seed",
    "save_every",
    "save_every_minutes",
)
LABELS = {
    "loss": "Loss",
    "beta": "Beta (β)",
    "label_smoothing": "Label smoothing",
    "optimizer": "Optimiser",
    "lr": "Learning rate",
    "warmup_steps": "Warm-up steps",
    "batch_size": "Batch size (pairs per micro-batch)",
    "grad_accum": "Gradient accumulation",
    "epochs": "Epochs",
    "max_length": "Max length (tokens)",
    "max_prompt_length": "Max prompt length (tokens)",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "sft_weight": "SFT weight",
    "max_grad_norm": "Max gradient norm",
    "seed": "Seed",
    "save_every": "Checkpoint every N steps",
    "save_every_minutes": "Checkpoint every N minutes",
}
SAMPLING_LABELS = {
    "n": "Completions per prompt (n)",
    "temperature": "Temperature",
    "top_p": "Top-p",
    "max_new_tokens": "Max new tokens",
    "seed": "Seed",
}
# What an empty "auto" field shows: the engine picks the value from the number of pairs.
AUTO = "auto"
AUTO_NOTE = " Empty: auto, chosen from the number of pairs (the preview shows the value)."


def train_config_defaults() -> dict[str, Any]:
    """The form's starting values: ``TrainConfig``'s defaults (None, shown empty, for "auto"), one loss."""
    defaults = {name: train_spec(name).default for name in TRAINING_FIELDS}
    return {**defaults, "loss": defaults["loss"][0]}


class TrainingRunForm(JudgementFilterForm):
    """The model version to start from, the judgements to use, and the DPO hyper-parameters.

    Every hyper-parameter field is derived from ``TrainConfig`` (type, bounds, help) and starts at its
    default. The schedule's fields (optimiser, rate, warm-up, epochs, batch, accumulation) default to
    "auto" and start empty: the engine resolves them against the data, and a value filled in wins. Only
    the values that differ from the defaults are stored on the run.
    """

    base_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.order_by("id"),
        empty_label=None,
        label="Start from model version",
    )
    processes = forms.IntegerField(
        min_value=1,
        initial=1,
        required=False,
        label="Processes",
        help_text="GPUs per run (processes). Empty: 1. More than one launches the engine through torchrun, and the "
        "run waits for a worker with that many GPUs (DUET_GPUS).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from training.services import latest_model_version

        kwargs["initial"] = {
            **train_config_defaults(),
            "base_version": latest_model_version().pk,
            **(kwargs.pop("initial", None) or {}),
        }
        super().__init__(*args, **kwargs)
        self.fields["processes"].validators.append(MaxValueValidator(settings.DUET_MAX_PROCESSES_PER_RUN))
        self.fields["processes"].widget.attrs["max"] = settings.DUET_MAX_PROCESSES_PER_RUN
        for name in TRAINING_FIELDS:
            self.fields[name] = _hyperparameter_field(name)
        self.fields["loss"].help_text = (
            "The preference loss (dpo_engine.losses): sigmoid is the DPO paper's; ipo, hinge, robust and the others "
            "are its variants as TRL implements them."
        )

    @property
    def hyperparameter_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in TRAINING_FIELDS]

    @property
    def data_fields(self) -> list[forms.BoundField]:
        names = ("base_version", "campaign", "since", "min_agreement", "exclude_annotators")
        return [self[name] for name in (*names, "include_flagged", "exclude_rushed", "processes")]

    def hyperparameters(self) -> dict[str, Any]:
        """The hyper-parameters that differ from ``TrainConfig``'s defaults (every filled "auto" field)."""
        defaults = train_config_defaults()
        chosen = {name: self.cleaned_data[name] for name in TRAINING_FIELDS}
        changed = {name: value for name, value in chosen.items() if value != defaults[name]}
        if "loss" in changed:
            changed["loss"] = [changed["loss"]]
        return changed

    def clean_processes(self) -> int:
        """Empty (or left out) is one process."""
        return self.cleaned_data.get("processes") or 1

    def clean_optimizer(self) -> str | None:
        return self.cleaned_data.get("optimizer") or None


def _hyperparameter_field(name: str) -> forms.Field:
    """The form field of a ``TrainConfig`` field; one whose default is None ("auto") may stay empty."""
    spec = train_spec(name)
    auto = spec.auto
    field = form_field(spec, label=LABELS[name], required=not auto)
    if auto:
        field.widget.attrs["placeholder"] = AUTO
        field.help_text += AUTO_NOTE
        if isinstance(field, forms.ChoiceField):
            field.choices = [("", AUTO), *((choice, choice) for choice in spec.choices or ())]
    return field


class GenerationRunForm(forms.Form):
    """Which prompts a model version answers, how it samples, and what its answers are paired with."""

    prompts = forms.ChoiceField(
        choices=GenerationRun.Prompts.choices, initial=GenerationRun.Prompts.ALL, widget=forms.RadioSelect
    )
    since = forms.DateField(
        required=False,
        label="Added since",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="For prompts added since a date (UTC).",
    )
    tag = forms.CharField(required=False, max_length=100, help_text="For prompts with a tag.")
    pairing = forms.ChoiceField(choices=GenerationRun.Pairing.choices, widget=forms.RadioSelect)
    max_prompts = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_PROMPTS_MAX,
        label="At most this many prompts",
        help_text="Empty: every matching prompt.",
    )
    campaign = forms.ModelChoiceField(
        queryset=Campaign.objects.order_by("name"),
        to_field_name="slug",
        required=False,
        empty_label="None: every prompt, comparisons in the default campaign",
        help_text="A campaign's round answers its prompts, and its comparisons land there.",
    )

    def __init__(self, *args: Any, version: ModelVersion, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label in SAMPLING_LABELS.items():
            self.fields[name] = form_field(sampling_spec(name), label=label)
            self.fields[name].initial = sampling_spec(name).default
        self.fields["n"].help_text = (
            "Against the parent: how many of this version's answers meet the parent's one. Two samples: at least 2."
        )
        self.order_fields(["campaign", "prompts", "since", "tag", "pairing", *SAMPLING_LABELS, "max_prompts"])
        has_parent = version.parent_id is not None
        self.fields["pairing"].initial = GenerationRun.Pairing.PARENT if has_parent else GenerationRun.Pairing.SELF
        if not has_parent:
            self.fields["n"].initial = 2
            self.fields["pairing"].help_text = (
                f"{version.name} has no parent, so its answers are paired with each other."
            )

    def clean_since(self) -> dt.datetime | None:
        return start_of_day(self.cleaned_data.get("since"))

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``generation_run_start``."""
        data = self.cleaned_data
        names = (
            "prompts", "since", "tag", "pairing", "n", "temperature", "top_p", "max_new_tokens", "seed", "max_prompts",
            "campaign",
        )  # fmt: skip
        return {name: data[name] for name in names}
