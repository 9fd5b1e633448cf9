"""The vote invariants, checked with SQL after the server stopped."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    violations: int

    @property
    def ok(self) -> bool:
        return self.violations == 0


def _queries() -> dict[str, str]:
    """Name -> SQL counting the violations of one invariant over the whole database."""
    from annotate.models import Assignment, Comparison, Judgement

    comparison, judgement, assignment = (m._meta.db_table for m in (Comparison, Judgement, Assignment))
    return {
        "comparisons with more than k judgements (counter or rows)": f"""
            SELECT count(*) FROM {comparison} c
            WHERE c.judgement_count > c.target_judgements
               OR (SELECT count(*) FROM {judgement} j WHERE j.comparison_id = c.id) > c.target_judgements""",
        "comparisons whose judgement_count differs from their judgement rows": f"""
            SELECT count(*) FROM {comparison} c
            LEFT JOIN (SELECT comparison_id, count(*) AS n FROM {judgement} GROUP BY comparison_id) j
              ON j.comparison_id = c.id
            WHERE c.judgement_count <> coalesce(j.n, 0)""",
        "(comparison, annotator) pairs judged more than once": f"""
            SELECT count(*) FROM (
              SELECT 1 FROM {judgement} WHERE annotator_id IS NOT NULL
              GROUP BY comparison_id, annotator_id HAVING count(*) > 1) d""",
        "judgements whose assignment is not marked judged": f"""
            SELECT count(*) FROM {judgement} j
            WHERE j.annotator_id IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM {assignment} a WHERE a.comparison_id = j.comparison_id
                 AND a.annotator_id = j.annotator_id AND a.judged_at IS NOT NULL)""",
    }


def invariants_check(
    accepted: Sequence[tuple[int, int, int]], unanswered: set[tuple[int, int]], last_history_judgement: int
) -> tuple[list[Check], int]:
    """SQL over the whole database after the server stopped, and the clients' 201s against the rows."""
    from django.db import connection

    from annotate.models import Judgement

    checks = []
    with connection.cursor() as cursor:
        for name, sql in _queries().items():
            cursor.execute(sql)
            row = cursor.fetchone()
            checks.append(Check(name, int(row[0]) if row else -1))
        cursor.execute(
            f"SELECT id, comparison_id, annotator_id FROM {Judgement._meta.db_table} WHERE annotator_id IS NOT NULL"
        )
        rows = {r[0]: (r[1], r[2]) for r in cursor.fetchall()}
    ids = Counter(j for j, _, _ in accepted)
    checks.append(Check("judgement ids returned by more than one 201", sum(n - 1 for n in ids.values() if n > 1)))
    checks.append(
        Check(
            "201s with no matching row (lost votes)",
            sum(1 for j, c, a in accepted if rows.get(j) != (c, a)),
        )
    )
    unacknowledged = [j for j in rows if j > last_history_judgement and j not in ids]
    # A vote whose answer never came may be recorded once: that is neither lost nor doubled.
    doubled = sum(1 for j in unacknowledged if rows[j] not in unanswered)
    checks.append(Check("rows of the run no client got a 201 for (doubled votes)", doubled))
    return checks, len(unacknowledged) - doubled
