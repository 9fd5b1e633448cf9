"""Limits on what people type, shared by the model, the services, the forms and the templates.

Kept free of our own imports so that ``annotate.models`` can use them without an import cycle.
"""

import re

# A reason is a short note beside a choice, not an essay; the judgement table's column is
# this wide, so raising it needs a migration as well.
REASON_MAX_CHARS = 1000

# A staff adjudication's note says why the votes were overruled: as short as a reason, and the
# comparison table's column is this wide.
ADJUDICATION_NOTE_MAX_CHARS = REASON_MAX_CHARS

# A campaign's guidelines are a page of markdown, its question one line.
GUIDELINES_MAX_CHARS = 20_000
QUESTION_MAX_CHARS = 200

# A campaign's name is a heading, and the column is this wide.
CAMPAIGN_NAME_MAX_CHARS = 200
# k is a PositiveSmallIntegerField, and GOLD_TARGET_JUDGEMENTS (its largest value) marks gold items;
# a real campaign wanting more than a thousand judgements per comparison is a typo.
TARGET_JUDGEMENTS_MAX = 1000
# A card read for longer than ten minutes was not rushed whatever the threshold says.
RUSHED_SECONDS_MAX = 600.0
# The column is a PositiveSmallIntegerField; a campaign asking for more gold answers than this never flags anyone.
GOLD_MIN_MAX = 1000

# The default campaign: every comparison belongs to one, and data from before campaigns moved here.
DEFAULT_CAMPAIGN_SLUG = "default"

# A gold item is shown to everyone (never twice to one person), so its k is the column's largest value
# rather than the campaign's.
GOLD_TARGET_JUDGEMENTS = 32767

# The largest id a client may name: every primary key is a signed 64-bit integer (BigAutoField),
# and a larger number sent on to the database is an overflow error there, not a missing row.
ID_MAX = 2**63 - 1


def reason_problem(reason: str) -> str | None:
    """What makes ``reason`` unstorable, or ``None``: the one rule the form, the API and the service apply.

    PostgreSQL text cannot hold a NUL, and a lone surrogate (a JSON ``"\\ud800"``) has no UTF-8
    encoding, so either would fail on the way into the database rather than be refused.
    """
    if len(reason) > REASON_MAX_CHARS:
        return f"is longer than {REASON_MAX_CHARS} characters"
    unstorable = _UNSTORABLE.search(reason)
    if unstorable is None:
        return None
    if unstorable.group() == "\x00":
        return "contains a NUL character"
    return "contains a lone surrogate, which is not text"


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
