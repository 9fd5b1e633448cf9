"""The audit log and API tokens in the Django admin: readable, never edited there.

Tokens are made, rotated and revoked through ``annotate.services`` (the tokens page, the
``api_token`` command), which also write the audit line that an admin edit would skip.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from annotate.models import ApiToken, AuditEntry


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor_name", "action", "target_label")
    list_filter = ("action",)
    search_fields = ("actor_name", "target_label")
    date_hierarchy = "created_at"


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ("prefix", "user", "created_at", "expires_at")
    search_fields = ("user__username", "prefix")
    exclude = ("digest",)
