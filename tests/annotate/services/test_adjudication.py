"""comparison_adjudicate: a staff decision stored on the comparison, replaceable, audited each time."""

import pytest

from annotate import services
from annotate.models import AuditAction, AuditEntry, Comparison
from tests.annotate.factories import ComparisonFactory, StaffFactory

pytestmark = pytest.mark.django_db


def test_a_decision_is_stored_on_the_comparison_with_who_and_why():
    comparison, staff = ComparisonFactory(), StaffFactory()
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="b", by=staff, note="B cites a source")
    comparison.refresh_from_db()
    assert (comparison.adjudicated_outcome, comparison.adjudicated_by, comparison.adjudication_note) == (
        "b",
        staff,
        "B cites a source",
    )
    assert comparison.adjudicated_at is not None


def test_a_later_decision_replaces_the_earlier_one_and_each_leaves_an_audit_line():
    comparison, staff = ComparisonFactory(), StaffFactory()
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="a", by=staff)
    services.comparison_adjudicate(comparison_id=comparison.id, outcome="tie", by=staff)
    comparison.refresh_from_db()
    assert comparison.adjudicated_outcome == "tie"
    lines = AuditEntry.objects.filter(action=AuditAction.ADJUDICATE).order_by("id")
    assert [(e.target_id, e.detail["outcome"], e.detail["previous"]) for e in lines] == [
        (str(comparison.id), "a", ""),
        (str(comparison.id), "tie", "a"),
    ]


def test_an_unknown_outcome_is_refused_and_changes_nothing():
    comparison = ComparisonFactory()
    with pytest.raises(services.AdjudicationInvalid, match="outcome"):
        services.comparison_adjudicate(comparison_id=comparison.id, outcome="left", by=StaffFactory())
    comparison.refresh_from_db()
    assert comparison.adjudicated_outcome == ""
    assert not AuditEntry.objects.filter(action=AuditAction.ADJUDICATE).exists()


def test_a_note_the_database_cannot_hold_is_refused():
    comparison = ComparisonFactory()
    with pytest.raises(services.AdjudicationInvalid, match="NUL"):
        services.comparison_adjudicate(comparison_id=comparison.id, outcome="a", by=StaffFactory(), note="a\x00b")


def test_an_unknown_comparison_is_does_not_exist():
    with pytest.raises(Comparison.DoesNotExist):
        services.comparison_adjudicate(comparison_id=10**9, outcome="a", by=StaffFactory())
