"""The URL of the database this process is connected to, for a child process (a worker) to reach the same one."""

from __future__ import annotations

from django.db import connection

POSTGRES_DEFAULT_PORT = 5432


def current_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or POSTGRES_DEFAULT_PORT
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{host}:{port}/{db['NAME']}"
