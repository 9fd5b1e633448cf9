"""The audit log: who is named, and one line for each staff action of the annotation app.

The training app's actions are checked in ``tests/training/services/test_control_audit.py``.
"""

import getpass

import pytest
from django.test import RequestFactory

from annotate import services
from annotate.formats import ImportFileError
from annotate.models import AuditAction, AuditEntry
from annotate.services.audit import audit_request_bound
from tests.annotate.factories import ComparisonFactory, StaffFactory, UserFactory
from tests.annotate.services._helpers import PAIRS, import_pairs, judge

pytestmark = pytest.mark.django_db


def _request_by(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_a_line_names_the_signed_in_user_of_the_request():
    staff = StaffFactory()
    with audit_request_bound(_request_by(staff)):
        entry = services.audit_record(action=AuditAction.EXPORT)
    assert (entry.actor, entry.actor_name) == (staff, staff.username)


def test_without_a_request_a_line_names_the_operating_system_user():
    entry = services.audit_record(action=AuditAction.EXPORT)
    assert (entry.actor, entry.actor_name) == (None, f"os:{getpass.getuser()}")


def test_a_line_names_its_target():
    comparison = ComparisonFactory()
    entry = services.audit_record(action=AuditAction.UNFLAG, target=comparison)
    assert (entry.target_type, entry.target_id, entry.target_label) == (
        "annotate.comparison",
        str(comparison.pk),
        str(comparison),
    )


def test_the_line_keeps_its_actors_name_after_the_account_is_deleted():
    staff = StaffFactory()
    with audit_request_bound(_request_by(staff)):
        services.audit_record(action=AuditAction.EXPORT)
    staff.delete()
    assert AuditEntry.objects.get().actor_name == staff.username


def test_importing_prompts_writes_one_line(write_jsonl):
    path = write_jsonl([{"prompt": "Hi?"}])
    with path.open("rb") as stream:
        services.prompts_import(stream=stream, name="prompts.jsonl")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.detail["file"], entry.detail["new"]) == (AuditAction.PROMPTS_IMPORT, "prompts.jsonl", 1)


def test_importing_pairs_writes_one_line(write_jsonl):
    import_pairs(write_jsonl(PAIRS, name="pairs.jsonl"))
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.detail["file"]) == (AuditAction.PAIRS_IMPORT, "pairs.jsonl")


def test_a_refused_import_writes_no_line(write_jsonl):
    with pytest.raises(ImportFileError):
        import_pairs(write_jsonl(["not json"], name="broken.jsonl"))
    assert not AuditEntry.objects.exists()


def test_exporting_writes_one_line(tmp_path):
    judge(UserFactory(), ComparisonFactory())
    services.export_preferences(path=tmp_path / "out.jsonl", fmt="jsonl")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.detail["rows"], entry.detail["format"]) == (AuditAction.EXPORT, 1, "jsonl")


@pytest.mark.parametrize(
    ("change", "action"),
    [
        ("create", AuditAction.TOKEN_CREATE),
        ("rotate", AuditAction.TOKEN_ROTATE),
    ],
)
def test_a_token_change_writes_one_line(change, action):
    user = UserFactory()
    getattr(services, f"api_token_{change}")(user=user)
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.detail["owner"]) == (action, user.username)


def test_revoking_a_token_writes_one_line_naming_it():
    user = UserFactory()
    issued = services.api_token_create(user=user)
    services.api_token_revoke(user=user, prefix=issued.record.prefix)
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.target_id) == (AuditAction.TOKEN_REVOKE, str(issued.record.pk))
