"""Limits on what people type, shared by the model, the services, the forms and the templates.

Kept free of imports so that ``annotate.models`` can use them without an import cycle.
"""

# A reason is a short note beside a choice, not an essay; the judgement table's column is
# this wide, so raising it needs a migration as well.
REASON_MAX_CHARS = 1000
