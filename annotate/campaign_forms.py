"""Parsing of the staff's campaign forms. What a campaign may hold is ``services.campaigns``' rule."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from annotate.models import Campaign, CampaignAccess, CampaignStatus


class CampaignForm(forms.Form):
    """Every field of a campaign; ``slug`` only when creating one (it names the campaign in URLs and runs)."""

    slug = forms.SlugField(max_length=50, help_text="Letters, digits, hyphens or underscores; cannot change later.")
    name = forms.CharField()
    question = forms.CharField(initial="Which answer is better?", help_text="Asked on every card.")
    guidelines = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text="Markdown, rendered safely; shown on an annotator's first visit and one key away on every card.",
    )
    target_judgements = forms.IntegerField(label="Judgements per comparison (k)")
    access = forms.ChoiceField(choices=CampaignAccess.choices, initial=CampaignAccess.EVERYONE)
    users = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.order_by("username"), required=False, help_text="With access by named users."
    )
    group = forms.ModelChoiceField(
        queryset=Group.objects.order_by("name"), required=False, help_text="With access by group."
    )
    gold_rate = forms.FloatField(initial=0.1, help_text="Share of cards that are gold items, 0 to 1.")
    gold_threshold = forms.FloatField(initial=0.7, help_text="Gold accuracy that flags an annotator below it, 0 to 1.")
    gold_min = forms.IntegerField(initial=5, help_text="Gold answers before the threshold applies.")
    pause_flagged = forms.BooleanField(required=False, label="Pause a flagged annotator's queue")
    rushed_seconds = forms.FloatField(label="Rushed below (seconds)")

    def __init__(self, *args: Any, campaign: Campaign | None = None, **kwargs: Any) -> None:
        if campaign is not None:
            kwargs.setdefault("initial", _initial(campaign))
        super().__init__(*args, **kwargs)
        if campaign is not None:
            del self.fields["slug"]

    def values(self) -> dict[str, Any]:
        """The cleaned values as ``campaign_create``/``campaign_update`` take them."""
        return {name: value for name, value in self.cleaned_data.items() if name in self.fields}


def _initial(campaign: Campaign) -> dict[str, Any]:
    initial = {name: getattr(campaign, name) for name in CampaignForm.base_fields if name not in ("slug", "users")}
    initial["users"] = list(campaign.users.all())
    return initial


class CampaignStatusForm(forms.Form):
    status = forms.ChoiceField(choices=CampaignStatus.choices)
