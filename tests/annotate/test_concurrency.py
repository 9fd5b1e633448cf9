"""Many annotators at once: no comparison over k judgements, nothing lost or doubled.

Runs against the configured database for real (PostgreSQL in CI, where assignment uses
``SKIP LOCKED``); on SQLite the same invariants must hold, only slower.
"""

import random
import threading
from collections import Counter

import pytest
from django.db import connection, connections
from django.db.models import Count

from annotate import services
from annotate.models import Comparison, Judgement
from tests.annotate.factories import ComparisonFactory, UserFactory

K = 3
ANNOTATORS = 10
THREADS = 20
COMPARISONS = 30


@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_keep_the_invariants():
    ComparisonFactory.create_batch(COMPARISONS, target_judgements=K)
    users = [UserFactory() for _ in range(ANNOTATORS)]
    recorded: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def annotate(user) -> None:
        rng = random.Random(user.id)
        try:
            start.wait()
            while True:
                card = services.assignment_next(annotator=user)
                if card is None:
                    return
                # Two threads share each annotator, so double submits really happen.
                try:
                    judgement = services.judgement_record(
                        annotator=user,
                        comparison_id=card.comparison_id,
                        left_id=card.left.id,
                        right_id=card.right.id,
                        choice=rng.choice(["left", "right", "tie", "both_bad"]),
                    )
                except services.JudgementConflict:
                    continue
                with lock:
                    recorded.append(judgement.id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=annotate, args=(users[i % ANNOTATORS],)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    rows = Counter(
        dict(Judgement.objects.values_list("comparison").annotate(n=Count("id")).values_list("comparison", "n"))
    )
    assert sorted(recorded) == sorted(Judgement.objects.values_list("id", flat=True))
    assert len(recorded) == COMPARISONS * K, "every slot filled: no judgement lost"
    for comparison in Comparison.objects.all():
        assert comparison.judgement_count == rows[comparison.id] == K
    pairs = Judgement.objects.values_list("comparison", "annotator")
    assert len(set(pairs)) == len(pairs), "no annotator judged a comparison twice"
    assert connection.vendor in {"postgresql", "sqlite"}
