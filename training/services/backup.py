"""Move a whole Duet instance to another database: every row, ids kept, as JSONL per model with a manifest.

``dumpdata``/``loaddata`` do not fit: ``dumpdata`` writes one JSON document per app (a stream, but one that
``loaddata`` reads whole into memory), cannot leave the password column out, and ``loaddata`` merges into
a non-empty database instead of refusing. Here each model is written in primary-key order, a batch at a
time, and read back the same way, so memory stays flat whatever the size of the instance.

What moves: users (without their password hashes: a loaded user has an unusable password until
``create_annotator NAME --password ...`` sets one) and groups, campaigns and flags, prompts,
completions, comparisons, leases, judgements, model versions, training runs with their frozen
judgements and metrics, generation runs. What does not: API tokens (secrets stay with the instance
that issued them), sessions, and the artifact store (``DUET_ARTIFACTS``: model weights, datasets, checkpoints),
which is copied as files or objects; the rows keep their store URIs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.management.color import no_style
from django.db import connection, models, transaction

from annotate.limits import DEFAULT_CAMPAIGN_SLUG
from annotate.models import (
    AnnotatorFlag,
    Assignment,
    Campaign,
    Comparison,
    Completion,
    GuidelinesSeen,
    Judgement,
    Prompt,
)
from dpo_engine.config import DEFAULT_MODEL
from training.models import GenerationRun, ModelVersion, TrainingMetric, TrainingRun

# Bumped when the layout of a dump changes (not when a model gains a field: the manifest lists the fields).
FORMAT_VERSION = 1
FORMAT_NAME = "duet-dump"
MANIFEST = "manifest.json"
# Rows per query when writing and per INSERT when loading: bounds memory, and keeps an INSERT's
# parameters under SQLite's limit for the widest model (about 30 columns).
BATCH_ROWS = 500
# Secrets that never leave the instance that made them.
LEFT_OUT_FIELDS = {"auth.user": {"password"}}


class BackupError(ValueError):
    """The dump cannot be written or loaded as asked; nothing was changed."""


def backup_models() -> list[type[models.Model]]:
    """Every model a dump moves, parents before children (a version's ``trained_by`` points forward:
    foreign keys are checked at commit on both PostgreSQL and SQLite, so the cycle loads in one transaction)."""
    user = get_user_model()
    return [
        user,
        Group,
        user.groups.through,
        ModelVersion,
        TrainingRun,
        Campaign,
        Campaign.users.through,
        Prompt,
        Campaign.prompts.through,
        Completion,
        Comparison,
        Assignment,
        Judgement,
        AnnotatorFlag,
        GuidelinesSeen,
        TrainingRun.judgements.through,
        TrainingMetric,
        GenerationRun,
    ]


def _label(model: type[models.Model]) -> str:
    return model._meta.label_lower


def _fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    left_out = LEFT_OUT_FIELDS.get(_label(model), set())
    return [f for f in model._meta.concrete_fields if f.name not in left_out]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to a dump")


def _rows(model: type[models.Model]) -> Iterator[str]:
    names = [f.attname for f in _fields(model)]
    query = model._base_manager.order_by("pk").values_list(*names)
    for row in query.iterator(chunk_size=BATCH_ROWS):
        # Sorted keys: the same rows give the same bytes whichever database they came from.
        yield json.dumps(dict(zip(names, row, strict=True)), sort_keys=True, ensure_ascii=False, default=_encode)


def database_dump(*, path: Path) -> dict[str, Any]:
    """Write every moved model's rows to ``path`` (a new or empty folder); return the manifest.

    Reads run in one transaction so the files are one consistent snapshot on PostgreSQL.
    """
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{path} exists and is not an empty folder")
    path.mkdir(parents=True, exist_ok=True)
    entries = []
    with transaction.atomic():
        for model in backup_models():
            name = f"{_label(model)}.jsonl"
            count = 0
            with (path / name).open("w", encoding="utf-8") as out:
                for line in _rows(model):
                    out.write(line + "\n")
                    count += 1
            entries.append({"model": _label(model), "file": name, "rows": count, "fields": _field_names(model)})
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "source_vendor": connection.vendor,
        "models": entries,
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _field_names(model: type[models.Model]) -> list[str]:
    return [f.attname for f in _fields(model)]


def manifest_read(*, path: Path) -> dict[str, Any]:
    """The dump's manifest, checked against this instance's schema before anything is written."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(f"{path} has no {MANIFEST}: not a Duet dump") from exc
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{path} is format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this instance reads {FORMAT_NAME!r} version {FORMAT_VERSION}"
        )
    by_label = {_label(m): m for m in backup_models()}
    listed = [entry["model"] for entry in manifest["models"]]
    if sorted(listed) != sorted(by_label):
        raise BackupError(f"{path} holds models {', '.join(listed)}; this instance moves {', '.join(by_label)}")
    for entry in manifest["models"]:
        expected = _field_names(by_label[entry["model"]])
        if entry["fields"] != expected:
            raise BackupError(
                f"{entry['model']} was dumped with fields {entry['fields']} but this instance has {expected}: "
                "migrate both instances to the same version first"
            )
    return manifest


def _seeded_versions() -> models.QuerySet[ModelVersion]:
    """What migrating an empty database creates: the built-in default version, used by nothing yet."""
    return ModelVersion.objects.filter(name=DEFAULT_MODEL, is_default=True, parent=None, trained_by=None)


def _seeded_campaigns() -> models.QuerySet[Campaign]:
    """What migrating an empty database creates: the default campaign, holding nothing yet."""
    return Campaign.objects.filter(
        slug=DEFAULT_CAMPAIGN_SLUG, comparisons=None, prompts=None, users=None, flags=None
    )


def _occupied() -> list[str]:
    """The moved models that already hold rows, counting the migrations' own default version and campaign as empty."""
    occupied = []
    for model in backup_models():
        rows = model._base_manager.all()
        if model is ModelVersion:
            rows = rows.exclude(pk__in=_seeded_versions().values("pk"))
        if model is Campaign:
            rows = rows.exclude(pk__in=_seeded_campaigns().values("pk"))
        if rows.exists():
            occupied.append(f"{_label(model)} ({model._base_manager.count()} rows)")
    return occupied


def database_load(*, path: Path) -> dict[str, int]:
    """Load a dump into an empty, migrated database, ids and timestamps as they were; return rows per model.

    All or nothing: one transaction, refused before any write when the database holds data.
    """
    manifest = manifest_read(path=path)
    by_label = {_label(m): m for m in backup_models()}
    loaded: dict[str, int] = {}
    with transaction.atomic():
        occupied = _occupied()
        if occupied:
            raise BackupError(
                "refusing to load into a database that holds data: " + ", ".join(occupied)
                + "; load into a freshly migrated, empty database"
            )
        _seeded_versions().delete()
        _seeded_campaigns().delete()
        for entry in manifest["models"]:
            model = by_label[entry["model"]]
            rows = loaded[entry["model"]] = _model_load(model, path / entry["file"])
            if rows != entry["rows"]:
                raise BackupError(f"{entry['file']} has {rows} rows; the manifest says {entry['rows']}")
        _sequences_reset()
    return loaded


def _model_load(model: type[models.Model], file: Path) -> int:
    fields = _fields(model)
    count = 0
    batch: list[models.Model] = []
    with file.open(encoding="utf-8") as lines:
        for line in lines:
            batch.append(_instance(model, fields, json.loads(line)))
            if len(batch) == BATCH_ROWS:
                count += _insert(model, fields, batch)
                batch = []
    return count + (_insert(model, fields, batch) if batch else 0)


def _instance(model: type[models.Model], fields: list[models.Field[Any, Any]], row: dict[str, Any]) -> models.Model:
    values = {
        f.attname: row[f.attname] if isinstance(f, models.JSONField) else f.to_python(row[f.attname]) for f in fields
    }
    if "password" in LEFT_OUT_FIELDS.get(_label(model), set()):
        values["password"] = make_password(None)
    return model(**values)


def _insert(model: type[models.Model], fields: list[models.Field[Any, Any]], batch: list[models.Model]) -> int:
    # ``raw`` keeps the stored values: ``bulk_create`` would stamp ``auto_now_add`` fields with the time of the
    # load, and the dump's timestamps are the point. ``_insert`` is what ``bulk_create`` and ``loaddata`` use.
    written = [f for f in model._meta.concrete_fields if f in fields or f.attname == "password"]
    model._base_manager._insert(batch, fields=written, raw=True)  # type: ignore[attr-defined]
    return len(batch)


def _sequences_reset() -> None:
    """Move PostgreSQL's id sequences past the loaded ids so that new rows get fresh ones (SQLite does it itself)."""
    statements = connection.ops.sequence_reset_sql(no_style(), backup_models())
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
