"""What the API's operations take that the database must be able to hold: row ids, and text without NUL.

Kept apart from ``config.api`` (which imports every app's router) so that any app's API module can import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field

# Every table's key is a BigAutoField: a signed 64-bit integer on PostgreSQL and SQLite alike. A larger
# number names no row, and the drivers refuse to send it (OverflowError), so the API refuses it first.
ROW_ID_MAX = 2**63 - 1

RowId = Annotated[int, Field(ge=1, le=ROW_ID_MAX, description="A row's id (a positive 64-bit integer).")]


class NulInText(ValueError):
    """Text with a NUL character: PostgreSQL's text columns cannot hold one, so no field may carry it."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: text cannot contain NUL characters")
        self.field = field


def nul_check(value: Any, field: str = "request") -> None:
    """Raise :class:`NulInText` naming the first field (a dotted path into lists and objects) that holds a NUL."""
    for where, text in _strings(value, field):
        if "\x00" in text:
            raise NulInText(where)


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(str(key), where)
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}.{index}")
