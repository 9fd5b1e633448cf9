"""Which judgements a preference dataset is built from: one value, stored with every training run."""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from annotate.models import Campaign


def moment_check(value: datetime | None, *, field: str) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``value`` (None passes) is a moment the database can store.

    A date at the calendar's edge with an offset (year 1 at +14:00) has no UTC time, and the
    database stores every moment in UTC: it would fail there as a server error.
    """
    if value is None:
        return
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"{field} {value.isoformat()} lies outside the dates that can be stored") from exc


def names_parse(text: str) -> tuple[str, ...]:
    """Names from a comma-separated list, blanks dropped: ``"ann, , bot"`` is ``("ann", "bot")``."""
    return tuple(name for name in (part.strip() for part in text.split(",")) if name)


@dataclass(frozen=True)
class JudgementFilter:
    """The judgements to count, and how sure a comparison's majority must be to become a row.

    ``exclude_annotators`` are usernames (people's judgements); ``exclude_sources`` are the file
    names imported judgements came from. ``min_agreement`` applies per comparison, to the share
    of its remaining judgements that voted for the winner. Judgements on evaluation comparisons
    (``Comparison.purpose``) measure a model on prompts it must never learn from, so a filter leaves
    them out unless ``include_evaluation`` asks for them; only readers that measure (the
    leaderboard) do, never a training dataset.

    ``campaign`` (a slug) keeps one campaign's judgements. Judgements by an annotator with an open
    flag in the comparison's campaign are left out unless ``include_flagged``; ``exclude_rushed``
    leaves out votes cast sooner after their card was leased than the campaign's rushed threshold.
    Judgements on gold items are never kept: gold measures annotators and never reaches training.
    """

    since: datetime | None = None
    exclude_annotators: tuple[str, ...] = ()
    exclude_sources: tuple[str, ...] = ()
    min_agreement: float = 0.0
    include_evaluation: bool = False
    campaign: str | None = None
    include_flagged: bool = False
    exclude_rushed: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must lie between 0 and 1, got {self.min_agreement}")
        moment_check(self.since, field="since")
        # Callers holding lists (a form's, a JSON document's) still get a hashable, immutable value.
        object.__setattr__(self, "exclude_annotators", tuple(self.exclude_annotators))
        object.__setattr__(self, "exclude_sources", tuple(self.exclude_sources))

    @classmethod
    def from_inputs(
        cls,
        *,
        since: datetime | None = None,
        min_agreement: float | None = None,
        exclude: str | Iterable[str] = (),
        campaign: str | None = None,
        include_flagged: bool = False,
        exclude_rushed: bool = False,
    ) -> JudgementFilter:
        """From a form, a command line or a query string, where one "leave out" list names both kinds.

        A person leaving out ``gold.jsonl`` or ``ann`` does not say which kind of name it is;
        usernames and import file names rarely collide, so each name leaves out either.
        """
        items = [exclude] if isinstance(exclude, str) else list(exclude)
        names = tuple(dict.fromkeys(name for item in items for name in names_parse(item)))
        return cls(
            since=since,
            exclude_annotators=names,
            exclude_sources=names,
            min_agreement=0.0 if min_agreement is None else float(min_agreement),
            campaign=campaign or None,
            include_flagged=include_flagged,
            exclude_rushed=exclude_rushed,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since is not None else None,
            "min_agreement": self.min_agreement,
            "exclude_annotators": list(self.exclude_annotators),
            "exclude_sources": list(self.exclude_sources),
            "include_evaluation": self.include_evaluation,
            "campaign": self.campaign,
            "include_flagged": self.include_flagged,
            "exclude_rushed": self.exclude_rushed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JudgementFilter:
        """The inverse of ``to_json``; also reads filters stored before sources had a field of their own.

        Those older documents have one ``exclude_annotators`` list that left out usernames and
        import file names alike, so without ``exclude_sources`` the same names stand for both.
        Documents from before evaluation rounds existed had nothing to include: a missing
        ``include_evaluation`` is False; those from before campaigns covered every campaign and
        left nobody out for a flag or for speed (nobody was flagged, nothing was timed).
        """
        annotators = tuple(data.get("exclude_annotators") or ())
        sources = data.get("exclude_sources", annotators)
        since = data.get("since")
        return cls(
            since=datetime.fromisoformat(since) if since else None,
            exclude_annotators=annotators,
            exclude_sources=tuple(sources or ()),
            min_agreement=float(data.get("min_agreement") or 0.0),
            include_evaluation=bool(data.get("include_evaluation", False)),
            campaign=data.get("campaign") or None,
            include_flagged=bool(data.get("include_flagged", False)),
            exclude_rushed=bool(data.get("exclude_rushed", False)),
        )


TRUSTED_JUDGEMENTS = JudgementFilter()
"""The default of exports and training runs: flagged annotators' votes left out."""

EVERY_JUDGEMENT = JudgementFilter(include_flagged=True)
"""Every judgement a reader may count (not evaluation, not gold): for statistics about people."""


def add_quality_arguments(parser: ArgumentParser) -> None:
    """``--campaign SLUG``, ``--include-flagged``, ``--exclude-rushed``: what every dataset-building command takes."""
    parser.add_argument("--campaign", default=None, metavar="SLUG", help="only this campaign's judgements")
    parser.add_argument(
        "--include-flagged",
        action="store_true",
        help="keep the judgements of annotators flagged for low gold accuracy (left out by default)",
    )
    parser.add_argument(
        "--exclude-rushed",
        action="store_true",
        help="leave out votes cast faster than their campaign's rushed threshold",
    )


def quality_options(source: Mapping[str, Any]) -> dict[str, Any]:
    """``campaign``, ``include_flagged`` and ``exclude_rushed`` for ``JudgementFilter.from_inputs``: the one parser.

    ``source`` is a command's options, a form's cleaned data or an API payload; a missing key is
    the default. A campaign slug that names no campaign is a ``ValueError`` naming it, rather than
    a dataset that is silently empty.
    """
    campaign = source.get("campaign") or None
    if campaign is not None:
        campaign = getattr(campaign, "slug", campaign)
        if not Campaign.objects.filter(slug=campaign).exists():
            raise ValueError(f"no campaign with slug {campaign!r}")
    return {
        "campaign": campaign,
        "include_flagged": bool(source.get("include_flagged")),
        "exclude_rushed": bool(source.get("exclude_rushed")),
    }
