"""Parsing of the staff's training and generation forms. The rules about the values live in the services."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django import forms

from training.models import GenerationRun, ModelVersion

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
}
WARMUP_NOTE = (
    " Where the data is small (fewer optimiser steps than warm-up steps), the warm-up is scaled to 10% of the "
    "steps; the run's log says so."
)


def _train_config_fields() -> dict[str, dataclasses.Field[Any]]:
    from dpo_engine.config import TrainConfig

    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def train_config_defaults() -> dict[str, Any]:
    from dpo_engine.config import TrainConfig

    defaults = TrainConfig(data="-")
    return {name: getattr(defaults, name) for name in TRAINING_FIELDS}


class TrainingRunForm(forms.Form):
    """The model version to start from, the judgements to use, and the DPO hyper-parameters.

    Every hyper-parameter starts at the DPO paper's value (``TrainConfig``'s defaults); only the
    ones changed here are stored on the run.
    """

    base_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.order_by("id"),
        empty_label=None,
        label="Start from model version",
    )
    since = forms.DateField(
        required=False,
        label="Judged since",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Only judgements made on or after this day (UTC); empty: all of them.",
    )
    min_agreement = forms.FloatField(
        required=False,
        initial=0.0,
        label="Minimum agreement",
        help_text="Share of a comparison's judgements that agree with its winner, 0 to 1.",
    )
    exclude_annotators = forms.CharField(
        required=False, label="Leave out annotators", help_text="Usernames, separated by commas."
    )
    loss = forms.ChoiceField()
    beta = forms.FloatField()
    label_smoothing = forms.FloatField()
    optimizer = forms.ChoiceField(choices=(("rmsprop", "RMSprop (the DPO paper)"), ("adamw", "AdamW")))
    lr = forms.FloatField(widget=forms.TextInput(attrs={"inputmode": "decimal"}))
    warmup_steps = forms.IntegerField()
    batch_size = forms.IntegerField()
    grad_accum = forms.IntegerField()
    epochs = forms.IntegerField()
    max_length = forms.IntegerField()
    max_prompt_length = forms.IntegerField()
    lora_r = forms.IntegerField()
    lora_alpha = forms.IntegerField()
    sft_weight = forms.FloatField()
    max_grad_norm = forms.FloatField()
    seed = forms.IntegerField()
    save_every = forms.IntegerField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from dpo_engine.losses import LOSSES
        from training.services import latest_model_version

        try:
            latest: int | None = latest_model_version().pk
        except ValueError:
            latest = None
        kwargs["initial"] = {
            **train_config_defaults(),
            "loss": "sigmoid",
            "base_version": latest,
            **(kwargs.pop("initial", None) or {}),
        }
        super().__init__(*args, **kwargs)
        config_fields = _train_config_fields()
        self.fields["loss"].choices = [(name, name) for name in LOSSES]  # type: ignore[attr-defined]
        for name in TRAINING_FIELDS:
            field = self.fields[name]
            field.label = LABELS[name]
            field.help_text = str(config_fields[name].metadata["help"]).replace("--", "")
            if name == "warmup_steps":
                field.help_text += WARMUP_NOTE
        self.fields["loss"].help_text = (
            "The preference loss (dpo_engine.losses): sigmoid is the DPO paper's; ipo, hinge, robust and the others "
            "are its variants as TRL implements them."
        )

    @property
    def hyperparameter_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in TRAINING_FIELDS]

    @property
    def data_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("base_version", "since", "min_agreement", "exclude_annotators")]

    def clean_since(self) -> dt.datetime | None:
        day: dt.date | None = self.cleaned_data.get("since")
        return None if day is None else dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)

    def clean_min_agreement(self) -> float:
        value = self.cleaned_data.get("min_agreement")
        return 0.0 if value is None else value

    def clean_exclude_annotators(self) -> list[str]:
        raw: str = self.cleaned_data.get("exclude_annotators") or ""
        return [name.strip() for name in raw.split(",") if name.strip()]

    def hyperparameters(self) -> dict[str, Any]:
        """The hyper-parameters that differ from the paper's defaults, as ``TrainConfig`` names them."""
        defaults = train_config_defaults()
        chosen = {name: self.cleaned_data[name] for name in TRAINING_FIELDS}
        chosen["loss"] = [chosen["loss"]]
        return {name: value for name, value in chosen.items() if value != defaults[name]}


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
    n = forms.IntegerField(
        min_value=1, max_value=16, initial=1, label="Completions per prompt (n)",
        help_text="Against the parent: how many of this version's answers meet the parent's one. Two samples: at "
        "least 2.",
    )
    temperature = forms.FloatField(initial=0.7)
    top_p = forms.FloatField(initial=0.95, label="Top-p")
    max_new_tokens = forms.IntegerField(initial=256, label="Max new tokens")
    seed = forms.IntegerField(initial=0)
    max_prompts = forms.IntegerField(
        required=False, min_value=1, label="At most this many prompts", help_text="Empty: every matching prompt."
    )

    def __init__(self, *args: Any, version: ModelVersion, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        has_parent = version.parent_id is not None
        self.fields["pairing"].initial = GenerationRun.Pairing.PARENT if has_parent else GenerationRun.Pairing.SELF
        if not has_parent:
            self.fields["n"].initial = 2
            self.fields["pairing"].help_text = (
                f"{version.name} has no parent, so its answers are paired with each other."
            )

    def clean_since(self) -> dt.datetime | None:
        day: dt.date | None = self.cleaned_data.get("since")
        return None if day is None else dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)

    def options(self) -> dict[str, Any]:
        """Keyword arguments of ``generation_run_start``."""
        data = self.cleaned_data
        names = ("prompts", "since", "tag", "pairing", "n", "temperature", "top_p", "max_new_tokens", "seed")
        return {**{name: data[name] for name in names}, "max_prompts": data["max_prompts"]}
