"""Parsing of the annotator's and staff's form posts. Rules about the data live in the services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from annotate.filters import JudgementFilter, names_parse, quality_options
from annotate.limits import ADJUDICATION_NOTE_MAX_CHARS, ID_MAX, REASON_MAX_CHARS, reason_problem
from annotate.models import Campaign, Judgement, Outcome
from annotate.services import EXPORT_FORMATS

IMPORT_FORMATS = (("", "From the file name"), ("jsonl", "JSONL"), ("csv", "CSV"), ("parquet", "Parquet"))
EXPORT_FORMAT_LABELS = {
    "jsonl": "JSONL (one preference row a line)",
    "parquet": "Parquet",
    "hf": "Hugging Face datasets folder (save_to_disk, zipped)",
}


def _id_field() -> forms.IntegerField:
    """A hidden id the database can hold: a larger number is a form error, not an overflow there."""
    return forms.IntegerField(min_value=1, max_value=ID_MAX, widget=forms.HiddenInput)


def _reason_validate(reason: str) -> None:
    problem = reason_problem(reason)
    if problem:
        raise ValidationError(f"The reason {problem}.")


class JudgementForm(forms.Form):
    comparison_id = _id_field()
    left_id = _id_field()
    right_id = _id_field()
    choice = forms.ChoiceField(choices=Judgement.Choice.choices)
    strength = forms.ChoiceField(choices=Judgement.Strength.choices, required=False)
    reason = forms.CharField(
        max_length=REASON_MAX_CHARS, required=False, strip=True, validators=[_reason_validate]
    )


class SkipForm(forms.Form):
    comparison_id = _id_field()


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
    gold = forms.BooleanField(
        required=False,
        label="Gold items",
        help_text="Each pair's 'chosen' (or a tie, where the row says \"tie\": true) is the expected answer.",
    )
    target_judgements = forms.IntegerField(
        min_value=1,
        max_value=100,
        required=False,
        label="Judgements per comparison",
        help_text="How many people judge each new comparison; default: the campaign's k.",
    )
    campaign = forms.ModelChoiceField(
        queryset=Campaign.objects.order_by("name"),
        to_field_name="slug",
        required=False,
        empty_label="The default campaign",
        help_text="The campaign the prompts and comparisons join.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == "prompts" and data.get("judged"):
            self.add_error("judged", "Only a pairs file can carry judgements.")
        if data.get("kind") == "prompts" and data.get("gold"):
            self.add_error("gold", "Only a pairs file can hold gold items.")
        return data


def start_of_day(day: dt.date | None) -> dt.datetime | None:
    """A date field's day as the instant it starts, in UTC (the app's time zone)."""
    return None if day is None else dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


class JudgementFilterForm(forms.Form):
    """The fields of a ``JudgementFilter``: which judgements a dataset (an export, a training run) is built from."""

    min_agreement = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        initial=0.0,
        required=False,
        label="Minimum agreement",
        help_text="Share of a comparison's judgements that agree with its winner, 0 to 1.",
    )
    since = forms.DateField(
        required=False,
        label="Judged since",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Only judgements made on or after this day (UTC); empty: all of them.",
    )
    exclude_annotators = forms.CharField(
        required=False,
        label="Leave out annotators",
        help_text="Usernames or import file names, separated by commas.",
    )
    campaign = forms.ModelChoiceField(
        queryset=Campaign.objects.all(),
        to_field_name="slug",
        required=False,
        empty_label="Every campaign",
        label="Campaign",
    )
    include_flagged = forms.BooleanField(
        required=False,
        label="Include flagged annotators",
        help_text="Keep the judgements of annotators flagged for low gold accuracy (left out by default).",
    )
    exclude_rushed = forms.BooleanField(
        required=False,
        label="Leave out rushed votes",
        help_text="Votes cast faster than their campaign's rushed threshold.",
    )

    def clean_min_agreement(self) -> float:
        value = self.cleaned_data.get("min_agreement")
        return 0.0 if value is None else value

    def clean_since(self) -> dt.datetime | None:
        return start_of_day(self.cleaned_data.get("since"))

    def clean_exclude_annotators(self) -> tuple[str, ...]:
        return names_parse(self.cleaned_data.get("exclude_annotators") or "")

    def judgement_filter(self) -> JudgementFilter:
        """The valid form's filter; each name left out may be a username or an import file."""
        data = self.cleaned_data
        return JudgementFilter.from_inputs(
            since=data["since"],
            min_agreement=data["min_agreement"],
            exclude=data["exclude_annotators"],
            **quality_options(data),
        )


class ExportForm(JudgementFilterForm):
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

    field_order = [
        "fmt",
        "conversational",
        "campaign",
        "min_agreement",
        "since",
        "exclude_annotators",
        "include_flagged",
        "exclude_rushed",
    ]


class AdjudicationForm(forms.Form):
    outcome = forms.ChoiceField(choices=Outcome.choices, widget=forms.RadioSelect)
    note = forms.CharField(required=False, max_length=ADJUDICATION_NOTE_MAX_CHARS, strip=True)
    gold = forms.BooleanField(required=False)
