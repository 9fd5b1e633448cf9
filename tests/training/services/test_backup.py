"""duet_dump / duet_load: a whole instance moves to an empty database and nothing about it changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection

from annotate import services as annotate_services
from annotate.models import AnnotatorFlag, ApiToken, Campaign, Judgement, Prompt
from config.database_url import current_database_url
from tests.annotate.factories import ComparisonFactory, CompletionFactory, PromptFactory, StaffFactory, UserFactory
from training.models import GenerationRun, ModelVersion, TrainingMetric, TrainingRun
from training.services.backup import (
    MANIFEST,
    BackupError,
    backup_models,
    database_dump,
    database_load,
)
from training.services.versions import default_model_version

# Each test empties the database (flush) to load into it, which needs real commits.
pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()


def _instance() -> None:
    """One of everything a dump moves, with the values that break naive copies: nested JSON, floats,
    unicode, microsecond timestamps, a version cycle (``trained_by``), a judgement without an annotator."""
    staff = StaffFactory(last_login=datetime(2026, 11, 30, 8, 15, 1, 123456, tzinfo=UTC))
    annotator = UserFactory()
    annotate_services.api_token_create(user=staff)
    base = ModelVersion.objects.create(name="base", path="/models/base", is_default=True)
    prompt = PromptFactory(
        tags=["math", "éval"], source="prompts.jsonl",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ünïcode ✓ 1/3?"}],
    )
    comparison = ComparisonFactory(
        prompt=prompt,
        completion_a=CompletionFactory(prompt=prompt, model_version=base, generation={"temperature": 0.7, "seed": 3}),
        completion_b=CompletionFactory(prompt=prompt, text="0.333…", generation={"nested": {"p": [0.1, None, True]}}),
        target_judgements=2,
    )
    card = annotate_services.lease_take(annotator=annotator)
    assert card is not None
    annotate_services.judgement_record(
        annotator=annotator, comparison_id=comparison.pk, left_id=card.left.id,
        right_id=card.right.id, choice="right", strength="clearly", reason="shorter",
    )
    judgement = Judgement.objects.create(
        comparison=comparison, annotator=None, source="gold.jsonl", left=comparison.completion_a,
        right=comparison.completion_b, choice="left", winner=comparison.completion_a,
    )
    run = TrainingRun.objects.create(
        base_version=base, status="succeeded", hyperparameters={"beta": 0.1, "lr": 5e-6}, created_by=staff,
        schedule={"steps": 3, "notes": ["small data"]}, learned=True, eval_after={"accuracy": 2 / 3},
    )
    run.judgements.add(judgement)
    TrainingMetric.objects.create(run=run, step=1, values={"loss": 0.6931471805599453, "rewards/margins": -1e-9})
    child = ModelVersion.objects.create(name="base+dpo1", path="/runs/train-1/final", parent=base, trained_by=run)
    GenerationRun.objects.create(
        model_version=child, status="failed", prompt_ids=[prompt.pk], after_training=run,
        since=datetime(2026, 11, 1, tzinfo=UTC), progress_step=1, progress_total=2, error="killed",
    )
    PromptFactory()  # a prompt nothing answered yet
    group = Group.objects.create(name="raters")
    annotator.groups.add(group)
    campaign = Campaign.objects.create(
        slug="harmless", name="Harmless", guidelines="# Rules\n\nNo *harm*.", access="group", group=group,
        gold_rate=0.25,
    )
    campaign.users.add(staff)
    campaign.prompts.add(prompt)
    ComparisonFactory(campaign=campaign, gold_outcome="a", target_judgements=5)
    AnnotatorFlag.objects.create(campaign=campaign, annotator=annotator, reason="gold 1/6", gold_seen=6, gold_correct=1)


def _rows() -> dict[str, list[dict[str, Any]]]:
    """Every moved model's rows, field by field, as the ORM reads them (passwords are not moved)."""
    snapshot = {}
    for model in backup_models():
        names = [f.attname for f in model._meta.concrete_fields if f.name != "password"]
        snapshot[model._meta.label_lower] = list(model._base_manager.order_by("pk").values(*names))
    return snapshot


def _empty() -> None:
    call_command("flush", interactive=False, verbosity=0)


def _data_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != MANIFEST}


def test_a_loaded_dump_has_every_row_field_by_field_ids_and_timestamps_included(tmp_path):
    _instance()
    before = _rows()
    database_dump(path=tmp_path / "a")
    _empty()
    database_load(path=tmp_path / "a")
    assert _rows() == before


def test_dumping_a_loaded_instance_gives_the_same_bytes(tmp_path):
    _instance()
    database_dump(path=tmp_path / "a")
    _empty()
    database_load(path=tmp_path / "a")
    database_dump(path=tmp_path / "b")
    assert _data_files(tmp_path / "a") == _data_files(tmp_path / "b")
    assert (tmp_path / "a" / MANIFEST).read_bytes() == (tmp_path / "b" / MANIFEST).read_bytes()


def test_the_manifest_counts_rows_and_names_the_source_database(tmp_path):
    _instance()
    manifest = database_dump(path=tmp_path / "a")
    counts = {entry["model"]: entry["rows"] for entry in manifest["models"]}
    assert manifest["source_vendor"] == connection.vendor
    assert counts == {label: len(rows) for label, rows in _rows().items()}
    assert counts["annotate.judgement"] == 2


def test_json_keys_are_written_sorted_so_either_database_gives_the_same_bytes(tmp_path):
    # PostgreSQL's jsonb puts shorter keys first ("b" before "ab"), SQLite keeps them as written.
    CompletionFactory(generation={"b": 1, "ab": {"y": 2, "xx": 3}})
    database_dump(path=tmp_path / "a")
    written = (tmp_path / "a" / "annotate.completion.jsonl").read_text()
    assert '"generation": {"ab": {"xx": 3, "y": 2}, "b": 1}' in written


def test_loaded_users_cannot_log_in_until_they_set_a_password_and_tokens_stay_behind(tmp_path):
    _instance()
    database_dump(path=tmp_path / "a")
    assert "password" not in (tmp_path / "a" / "auth.user.jsonl").read_text()
    _empty()
    database_load(path=tmp_path / "a")
    assert User.objects.count() == 2
    assert not any(user.has_usable_password() for user in User.objects.all())
    assert not ApiToken.objects.exists()


def test_a_row_added_after_a_load_gets_a_fresh_id(tmp_path):
    _instance()
    database_dump(path=tmp_path / "a")
    highest = Prompt.objects.order_by("-pk").first().pk  # type: ignore[union-attr]
    _empty()
    database_load(path=tmp_path / "a")
    assert PromptFactory().pk > highest


def test_a_freshly_migrated_database_counts_as_empty(tmp_path):
    _instance()
    dumped = list(ModelVersion.objects.values_list("pk", "name"))
    database_dump(path=tmp_path / "a")
    _empty()
    default_model_version()  # what the migrations seed into a new database
    annotate_services.campaign_default()
    database_load(path=tmp_path / "a")
    assert list(ModelVersion.objects.values_list("pk", "name")) == dumped


def test_loading_into_a_database_with_data_is_refused_and_writes_nothing(tmp_path):
    _instance()
    database_dump(path=tmp_path / "a")
    _empty()
    UserFactory(username="already-here")
    with pytest.raises(BackupError, match=r"refusing to load into a database that holds data: auth\.user \(1 rows\)"):
        database_load(path=tmp_path / "a")
    assert list(User.objects.values_list("username", flat=True)) == ["already-here"]
    assert not Prompt.objects.exists()


def test_a_damaged_dump_loads_nothing(tmp_path):
    _instance()
    database_dump(path=tmp_path / "a")
    judgements = tmp_path / "a" / "annotate.judgement.jsonl"
    judgements.write_text(judgements.read_text().splitlines()[0] + "\n")
    _empty()
    with pytest.raises(BackupError, match="has 1 rows; the manifest says 2"):
        database_load(path=tmp_path / "a")
    assert not any(model._base_manager.exists() for model in backup_models())


def test_a_dump_of_another_schema_is_refused(tmp_path):
    _instance()
    database_dump(path=tmp_path / "a")
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    manifest["models"][0]["fields"].append("favourite_colour")
    (tmp_path / "a" / MANIFEST).write_text(json.dumps(manifest))
    _empty()
    with pytest.raises(BackupError, match="migrate both instances to the same version"):
        database_load(path=tmp_path / "a")


def test_dumping_into_a_folder_with_files_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("mine")
    with pytest.raises(BackupError, match="is not an empty folder"):
        database_dump(path=tmp_path / "a")


# From SQLite to PostgreSQL, through the commands, each instance in a process of its own ---------------------


def _manage(database_url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def throwaway_postgres() -> Any:
    """An empty PostgreSQL database beside the test database, dropped afterwards."""
    if connection.vendor != "postgresql":
        pytest.skip("moving to PostgreSQL needs the suite to run on PostgreSQL (DATABASE_URL)")
    import psycopg

    name = f"{connection.settings_dict['NAME']}_xdb"
    server = current_database_url().rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_instance_moves_from_sqlite_to_postgresql_unchanged(tmp_path, throwaway_postgres):
    _instance()
    database_dump(path=tmp_path / "origin")
    sqlite = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    _manage(sqlite, "migrate", "--noinput")
    _manage(sqlite, "duet_load", str(tmp_path / "origin"))
    assert "dumped from sqlite" in _manage(sqlite, "duet_dump", str(tmp_path / "from-sqlite"))
    _manage(throwaway_postgres, "migrate", "--noinput")
    _manage(throwaway_postgres, "duet_load", str(tmp_path / "from-sqlite"))
    assert "dumped from postgresql" in _manage(throwaway_postgres, "duet_dump", str(tmp_path / "from-postgresql"))
    assert _data_files(tmp_path / "from-sqlite") == _data_files(tmp_path / "origin")
    assert _data_files(tmp_path / "from-postgresql") == _data_files(tmp_path / "from-sqlite")
