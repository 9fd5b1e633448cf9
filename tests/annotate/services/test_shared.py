"""``annotate/services/_shared.py``: a write PostgreSQL aborts to break a deadlock runs again."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

from annotate.models import Comparison
from annotate.services import _shared
from tests.annotate.factories import ComparisonFactory

pytestmark = pytest.mark.timeout(120)


def _crossed_writes(first: int, second: int, meet: threading.Barrier, mine: list[int], tries: list[int]) -> None:
    """Lock ``first``, on the first try wait until the other writer holds its own first row, then lock ``second``."""
    with transaction.atomic():
        mine.append(1)
        tries.append(1)
        Comparison.objects.filter(id=first).update(judgement_count=1)
        if len(mine) == 1:
            meet.wait(timeout=10)
        Comparison.objects.filter(id=second).update(judgement_count=1)


@pytest.mark.django_db(transaction=True)
def test_two_writes_locking_rows_in_opposite_orders_both_land():
    if connection.vendor != "postgresql":
        pytest.skip("deadlock detection is PostgreSQL's")
    one, two = ComparisonFactory(), ComparisonFactory()
    meet = threading.Barrier(2)
    tries: list[int] = []
    errors: list[BaseException] = []

    def write(first: int, second: int) -> None:
        mine: list[int] = []
        try:
            _shared.deadlock_retry(lambda: _crossed_writes(first, second, meet, mine, tries))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=pair) for pair in ((one.pk, two.pk), (two.pk, one.pk))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(tries) == 3, "one of the two was the deadlock's victim and ran again"
    assert sorted(Comparison.objects.values_list("judgement_count", flat=True)) == [1, 1]


def test_another_operational_error_is_not_retried():
    tries: list[int] = []

    def write() -> None:
        tries.append(1)
        raise OperationalError("server closed the connection")

    with pytest.raises(OperationalError, match="server closed"):
        _shared.deadlock_retry(write)
    assert tries == [1]
