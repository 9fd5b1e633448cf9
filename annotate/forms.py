"""Parsing of the annotator's and staff's form posts. Rules about the data live in the services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings

from annotate.models import Judgement
from annotate.services import EXPORT_FORMATS

IMPORT_FORMATS = (("", "From the file name"), ("jsonl", "JSONL"), ("csv", "CSV"), ("parquet", "Parquet"))
EXPORT_FORMAT_LABELS = {
    "jsonl": "JSONL (one preference row a line)",
    "parquet": "Parquet",
    "hf": "Hugging Face datasets folder (save_to_disk, zipped)",
}


class JudgementForm(forms.Form):
    comparison_id = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    left_id = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    right_id = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    choice = forms.ChoiceField(choices=Judgement.Choice.choices)
    strength = forms.ChoiceField(choices=Judgement.Strength.choices, required=False)
    reason = forms.CharField(max_length=settings.DUET_MAX_REASON_CHARS, required=False, strip=True)


class SkipForm(forms.Form):
    comparison_id = forms.IntegerField(min_value=1, widget=forms.HiddenInput)


class ImportForm(forms.Form):
    kind = forms.ChoiceField(
        choices=(("pairs", "Pairs (prompt, chosen, rejected)"), ("prompts", "Prompts only")),
        initial="pairs",
        widget=forms.RadioSelect,
    )
    file = forms.FileField(help_text="JSONL, CSV or Parquet in TRL's preference or prompt format.")
    fmt = forms.ChoiceField(choices=IMPORT_FORMATS, required=False, label="Format")
    judged = forms.BooleanField(
        required=False,
        label="The file's choice is a judgement",
        help_text="Record 'chosen' as the winner, as one judgement from this file (pairs only).",
    )
    target_judgements = forms.IntegerField(
        min_value=1,
        max_value=100,
        required=False,
        label="Judgements per comparison",
        help_text=f"How many people judge each new comparison; default {settings.DUET_JUDGEMENTS_PER_COMPARISON}.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == "prompts" and data.get("judged"):
            self.add_error("judged", "Only a pairs file can carry judgements.")
        return data


class ExportForm(forms.Form):
    fmt = forms.ChoiceField(
        choices=[(f, EXPORT_FORMAT_LABELS.get(f, f)) for f in EXPORT_FORMATS],
        initial="jsonl",
        label="Format",
        widget=forms.RadioSelect,
    )
    conversational = forms.BooleanField(
        required=False,
        help_text="Messages lists instead of plain strings; keeps multi-turn prompts.",
    )
    min_agreement = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        initial=0.0,
        required=False,
        label="Minimum agreement",
        help_text="Share of judgements that agree with the winner, 0 to 1.",
    )
    since = forms.DateField(
        required=False,
        label="Judged since",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Only judgements made on or after this day (UTC).",
    )
    exclude_annotators = forms.CharField(
        required=False,
        label="Leave out annotators",
        help_text="Usernames or import file names, separated by commas.",
    )

    def clean_min_agreement(self) -> float:
        value = self.cleaned_data.get("min_agreement")
        return 0.0 if value is None else value

    def clean_since(self) -> dt.datetime | None:
        day: dt.date | None = self.cleaned_data.get("since")
        return None if day is None else dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)

    def clean_exclude_annotators(self) -> list[str]:
        raw: str = self.cleaned_data.get("exclude_annotators") or ""
        return [name.strip() for name in raw.split(",") if name.strip()]
