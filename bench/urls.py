"""The project's URLs plus ``/api/bench/trivial``: the peer the annotator API is measured against.

It lies under ``/api/`` so the login middleware lets it through without a session, like the API.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns


def trivial(request: HttpRequest) -> JsonResponse:
    """One query and a small JSON body: what any Django view on this server costs at least."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        row = cursor.fetchone()
    return JsonResponse({"ok": row[0] if row else None})


urlpatterns = [path("api/bench/trivial", trivial, name="bench-trivial"), *project_urlpatterns]
