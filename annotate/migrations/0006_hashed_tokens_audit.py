"""API tokens kept as their sha256 (several per user, with an expiry), the audit log, and failed logins.

The data step hashes every existing plaintext token, so the tokens people hold keep working.
"""

import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

PREFIX_CHARS = 8


def hash_existing_tokens(apps, schema_editor):
    ApiToken = apps.get_model("annotate", "ApiToken")
    for token in ApiToken.objects.all().iterator():
        token.digest = hashlib.sha256(token.key.encode()).hexdigest()
        token.prefix = token.key[:PREFIX_CHARS]
        token.save(update_fields=["digest", "prefix"])


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0005_judgement_import_hash"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(name="apitoken", options={"ordering": ["-created_at", "-id"]}),
        migrations.AlterField(
            model_name="apitoken",
            name="user",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="api_tokens", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AddField(model_name="apitoken", name="digest", field=models.CharField(max_length=64, null=True)),
        migrations.AddField(
            model_name="apitoken",
            name="prefix",
            field=models.CharField(default="", max_length=PREFIX_CHARS),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(blank=True, help_text="Empty: never expires.", null=True),
        ),
        migrations.RunPython(hash_existing_tokens, migrations.RunPython.noop, elidable=False),
        migrations.RemoveField(model_name="apitoken", name="key"),
        migrations.AlterField(model_name="apitoken", name="digest", field=models.CharField(max_length=64, unique=True)),
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("actor_name", models.CharField(max_length=150)),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("prompts_import", "Imported prompts"),
                            ("pairs_import", "Imported pairs"),
                            ("export", "Exported preferences"),
                            ("training_start", "Started a training run"),
                            ("training_cancel", "Cancelled a training run"),
                            ("training_resume", "Resumed a training run"),
                            ("generation_start", "Started a generation run"),
                            ("generation_cancel", "Cancelled a generation run"),
                            ("unflag", "Unflagged"),
                            ("token_create", "Created an API token"),
                            ("token_rotate", "Rotated API tokens"),
                            ("token_revoke", "Revoked an API token"),
                        ],
                        db_index=True,
                        max_length=32,
                    ),
                ),
                ("target_type", models.CharField(blank=True, max_length=100)),
                ("target_id", models.CharField(blank=True, max_length=64)),
                ("target_label", models.CharField(blank=True, max_length=200)),
                ("detail", models.JSONField(blank=True, default=dict)),
                (
                    "actor",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"verbose_name_plural": "audit entries", "ordering": ["-created_at", "-id"]},
        ),
        migrations.CreateModel(
            name="LoginFailure",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("username", models.CharField(db_index=True, max_length=150)),
                ("ip", models.GenericIPAddressField(db_index=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
            ],
        ),
    ]
