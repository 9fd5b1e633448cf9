"""When a judgement's card was shown, and when a vote counts as rushed: one home for both, as query expressions.

A card is shown when it is leased (the assignment's creation) or when an undo hands it back
(``undone_at``), whichever is later; ``annotate.agreement.vote_of`` reads the same two columns the
same way for the time on card. A vote cast sooner than its campaign's ``rushed_seconds`` after
that counts as rushed. Imported judgements have no lease, so they are never rushed.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.db.models import (
    BigIntegerField,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast, Coalesce, Greatest

from annotate.models import Assignment, Judgement


def _lease() -> QuerySet[Assignment]:
    """The assignment a judgement was cast on: one per comparison and annotator (a filter on ``Assignment``)."""
    return Assignment.objects.filter(comparison_id=OuterRef("comparison_id"), annotator_id=OuterRef("annotator_id"))


def lease_times() -> dict[str, Subquery]:
    """A judgement's lease creation and undo as annotations ``leased_at`` and ``undone_at`` (for ``vote_of``)."""
    lease = _lease()
    return {
        "leased_at": Subquery(lease.values("created_at")[:1]),
        "undone_at": Subquery(lease.values("undone_at")[:1]),
    }


def card_shown_at() -> Subquery:
    """When a judgement's card was shown: the later of its lease's creation and undo; NULL without a lease."""
    shown = Greatest("created_at", Coalesce("undone_at", "created_at"))
    return Subquery(_lease().annotate(shown=shown).values("shown")[:1], output_field=DateTimeField())


def _seconds(seconds: Combinable) -> ExpressionWrapper:
    """A float column of seconds as a duration the database can add to a moment.

    PostgreSQL multiplies an interval; SQLite keeps durations as whole microseconds.
    """
    if connection.features.has_native_duration_field:
        return ExpressionWrapper(seconds * Value(timedelta(seconds=1)), output_field=DurationField())
    micros = Cast(seconds * Value(1_000_000), output_field=BigIntegerField())
    return ExpressionWrapper(micros, output_field=DurationField())


def rushed_q() -> Q:
    """Rushed votes, as a filter on ``Judgement``: cast before their campaign's ``rushed_seconds`` on the card ran out.

    Needs ``unrushed_from`` annotated by ``with_unrushed_from``.
    """
    return Q(unrushed_from__isnull=False) & Q(created_at__lt=F("unrushed_from"))


def with_unrushed_from(judgements: QuerySet[Judgement]) -> QuerySet[Judgement]:
    """``judgements`` with ``unrushed_from``: the moment from which a vote on that card is no longer rushed."""
    rushed_for = _seconds(F("comparison__campaign__rushed_seconds"))
    return judgements.alias(
        unrushed_from=ExpressionWrapper(card_shown_at() + rushed_for, output_field=DateTimeField())
    )
