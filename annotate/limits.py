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
