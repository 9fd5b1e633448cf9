"""Shared parts of the import commands."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from annotate import services
from annotate.formats import FORMATS, ImportFileError
from annotate.models import Campaign


def open_import_file(path: str):  # type: ignore[no-untyped-def]
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"{path}: no such file")
    return file.open("rb")


def add_format_argument(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("path", help="JSONL, CSV or Parquet file")
    parser.add_argument("--format", choices=FORMATS, help="file format (default: from the extension)")


def import_error(exc: ImportFileError) -> CommandError:
    return CommandError(f"nothing was imported:\n{exc}")


def add_campaign_argument(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--campaign", default=None, metavar="SLUG", help="the campaign it joins (default: the default)")


def campaign_option(slug: object) -> Campaign:
    """The campaign ``--campaign`` names, or the default one; an unknown slug is an error naming it."""
    try:
        return services.campaign_resolve(slug=str(slug) if slug else None)
    except services.CampaignNotFound as exc:
        raise CommandError(f"--campaign: {exc}") from exc
