"""Many annotators at once: no comparison over k judgements or k holders, nothing lost or doubled.

Runs against the configured database for real (PostgreSQL in CI, where assignment uses
``SKIP LOCKED``), through both hot paths (the single statement and its ORM twin); on SQLite the
portable path must keep the same invariants, only slower.
"""

import random
import threading
from collections import Counter

import pytest
from django.db import connections
from django.db.models import Count, F, Q
from django.utils import timezone

from annotate import services
from annotate.models import Assignment, Comparison, Judgement
from tests.annotate.factories import ComparisonFactory, UserFactory

K = 3
ANNOTATORS = 10
THREADS = 20
COMPARISONS = 30

# The refusals a double submit can meet: the other thread of the same annotator voted first.
EXPECTED_REFUSALS = ("you have already judged this comparison", "this comparison has all the judgements it needs")


def _overheld() -> list[int]:
    """Comparisons whose judgements and live leases, read in one snapshot, are more than k."""
    live = Q(
        assignments__judged_at__isnull=True,
        assignments__skipped_at__isnull=True,
        assignments__expires_at__gt=timezone.now(),
    )
    held = Comparison.objects.alias(live=Count("assignments", filter=live))
    return list(held.filter(target_judgements__lt=F("judgement_count") + F("live")).values_list("id", flat=True))


def _hoarders() -> list[int]:
    """Annotators holding more than one live lease."""
    live = Assignment.objects.filter(judged_at__isnull=True, skipped_at__isnull=True, expires_at__gt=timezone.now())
    per_annotator = live.values("annotator").annotate(n=Count("id"))
    return list(per_annotator.filter(n__gt=1).values_list("annotator", flat=True))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hot_path")
def test_concurrent_annotators_keep_the_invariants():
    ComparisonFactory.create_batch(COMPARISONS, target_judgements=K)
    users = [UserFactory() for _ in range(ANNOTATORS)]
    recorded: list[int] = []
    refused: Counter[str] = Counter()
    votes: list[int] = []
    errors: list[BaseException] = []
    overheld: set[int] = set()
    hoarders: set[int] = set()
    lock = threading.Lock()
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()

    def annotate(user) -> None:
        rng = random.Random(user.id)
        try:
            start.wait()
            while True:
                card = services.lease_take(annotator=user)
                if card is None:
                    return
                with lock:
                    votes.append(card.comparison_id)
                # Two threads share each annotator, so double submits really happen.
                try:
                    judgement = services.judgement_record(
                        annotator=user,
                        comparison_id=card.comparison_id,
                        left_id=card.left.id,
                        right_id=card.right.id,
                        choice=rng.choice(["left", "right", "tie", "both_bad"]),
                    )
                except services.JudgementConflict as exc:
                    with lock:
                        refused[str(exc)] += 1
                    continue
                with lock:
                    recorded.append(judgement.id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def watch() -> None:
        """Samples the holders per comparison and per annotator while the annotators run."""
        try:
            start.wait()
            while not done.is_set():
                overheld.update(_overheld())
                hoarders.update(_hoarders())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=annotate, args=(users[i % ANNOTATORS],)) for i in range(THREADS)]
    watcher = threading.Thread(target=watch)
    for thread in [*threads, watcher]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    watcher.join(timeout=30)

    assert not errors, errors
    assert not any(thread.is_alive() for thread in [*threads, watcher])
    assert (sorted(overheld), sorted(hoarders)) == ([], []), "never more than k holders, one live lease each"
    assert set(refused) <= set(EXPECTED_REFUSALS), refused
    assert len(recorded) + sum(refused.values()) == len(votes), "every vote recorded or refused, none lost"
    rows = Counter(
        dict(Judgement.objects.values_list("comparison").annotate(n=Count("id")).values_list("comparison", "n"))
    )
    assert sorted(recorded) == sorted(Judgement.objects.values_list("id", flat=True))
    assert len(recorded) == COMPARISONS * K, "every slot filled: no judgement lost"
    for comparison in Comparison.objects.all():
        assert comparison.judgement_count == rows[comparison.id] == K
    pairs = Judgement.objects.values_list("comparison", "annotator")
    assert len(set(pairs)) == len(pairs), "no annotator judged a comparison twice"
