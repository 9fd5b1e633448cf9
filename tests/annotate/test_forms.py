"""JudgementFilterForm's quality fields, shared by the export form and the training-run form."""

import pytest

from annotate.forms import ExportForm
from tests.annotate.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def _form(**changes):
    return ExportForm(data={"fmt": "jsonl", "min_agreement": "0", **changes})


def test_the_export_form_builds_a_filter_with_the_quality_options():
    CampaignFactory(slug="helpful")
    form = _form(campaign="helpful", include_flagged="on", exclude_rushed="on")
    assert form.is_valid(), form.errors
    judgement_filter = form.judgement_filter()
    assert (judgement_filter.campaign, judgement_filter.include_flagged, judgement_filter.exclude_rushed) == (
        "helpful",
        True,
        True,
    )


def test_by_default_the_form_covers_every_campaign_and_leaves_flagged_out():
    form = _form()
    assert form.is_valid(), form.errors
    judgement_filter = form.judgement_filter()
    assert (judgement_filter.campaign, judgement_filter.include_flagged, judgement_filter.exclude_rushed) == (
        None,
        False,
        False,
    )


def test_an_unknown_campaign_is_a_form_error():
    form = _form(campaign="nowhere")
    assert not form.is_valid()
    assert "campaign" in form.errors
