"""The benchmark's own PostgreSQL database: created, migrated, seeded, dropped."""

from __future__ import annotations

import math
import os
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from annotate.models import Comparison, Completion, Prompt

HOST = "127.0.0.1"
PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
# ``DUET_BENCH_DB`` names another database, so two runs on one PostgreSQL (a before and an after) never meet.
DATABASE = os.environ.get("DUET_BENCH_DB", "duet_bench")
DATABASE_URL = f"postgres://postgres@{HOST}:5432/{DATABASE}"
CHOICES = ("left", "right", "tie", "both_bad")
# Rows per INSERT while seeding: tens of thousands of rows in a few statements, each well within
# PostgreSQL's 65,535 bind parameters.
BULK_BATCH = 2000
# Random bytes of an API token, as ``annotate.models`` issues them.
TOKEN_BYTES = 32
# A fixed seed, so every run judges the same texts and history.
SEED_DATA = 1
# Words of a prompt and of a completion: payloads of a realistic size for ``next`` to send.
PROMPT_WORDS = 40
COMPLETION_WORDS = 120
VOCABULARY = (
    "the",
    "model",
    "answer",
    "prompt",
    "token",
    "gradient",
    "policy",
    "reward",
    "human",
    "better",
    "worse",
    "code",
    "list",
    "step",
)


def database_prepare() -> None:
    """Create ``duet_bench`` if missing, migrate it, and empty the tables the benchmark fills."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{DATABASE}"')
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    from django.contrib.auth import get_user_model

    from annotate.models import ApiToken, Assignment, Comparison, Completion, Judgement, Prompt

    tables = [m._meta.db_table for m in (Judgement, Assignment, Comparison, Completion, Prompt, ApiToken)]
    tables.append(get_user_model()._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def database_drop() -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


# Gold items beyond what the run can serve: a gold pick that finds none left would cost less than one that finds one.
SPARE_GOLD = 50


@dataclass(frozen=True)
class Seeded:
    accounts: list[tuple[int, str]]  # (user id, token) of each annotator
    last_history_judgement: int  # judgement ids above this one are the run's


def gold_items_needed(*, annotators: int, comparisons: int, k: int, gold_rate: float) -> int:
    """Enough gold items that no annotator runs out: at most ``comparisons * k`` ordinary votes are shared out."""
    if gold_rate <= 0:
        return 0
    per_annotator = gold_rate / (1 - min(gold_rate, 0.99)) * comparisons * k / annotators
    return math.ceil(per_annotator) + SPARE_GOLD


def seed(
    *, annotators: int, comparisons: int, history: int, k: int, campaign: str = "", gold_rate: float = 0.0
) -> Seeded:
    """Annotators with tokens, ``history`` comparisons judged k times already, then open ones and gold items.

    All of them in ``campaign`` (created with ``gold_rate``; the default campaign when blank). The
    history makes table sizes and planner statistics those of a database in use, so a query whose
    cost grows with past judging shows it here too.
    """
    from django.db import connection, transaction

    from annotate.models import Campaign
    from annotate.services import campaign_default

    rng = random.Random(SEED_DATA)
    gold = gold_items_needed(annotators=annotators, comparisons=comparisons, k=k, gold_rate=gold_rate)
    with transaction.atomic():
        target = Campaign.objects.get_or_create(slug=campaign, defaults={"name": campaign})[0] if campaign else None
        target = target or campaign_default()
        Campaign.objects.filter(pk=target.pk).update(gold_rate=gold_rate)
        users, tokens = _accounts_create(annotators)
        prompts, completions = _completions_create(rng, history + comparisons + gold)
        compared = _comparisons_create(prompts, completions, history=history, k=k, gold=gold, campaign_id=target.pk)
        last = _history_create(rng, compared[:history], users, k=k)
    # Planner statistics, as a database that has been in use for a while has them.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return Seeded(accounts=tokens, last_history_judgement=last)


def _accounts_create(annotators: int) -> tuple[list[AbstractBaseUser], list[tuple[int, str]]]:
    """Users without a usable password, each with an API token (its user's id and the token itself)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from annotate.models import TOKEN_PREFIX_CHARS, ApiToken, token_digest

    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"bench-annotator-{i:04d}", password=make_password(None)) for i in range(annotators)]
    )
    keys = [secrets.token_urlsafe(TOKEN_BYTES) for _ in users]
    pairs = list(zip(users, keys, strict=True))
    ApiToken.objects.bulk_create(
        [ApiToken(user=u, digest=token_digest(k), prefix=k[:TOKEN_PREFIX_CHARS]) for u, k in pairs]
    )
    return users, [(u.pk, k) for u, k in pairs]


def _completions_create(rng: random.Random, total: int) -> tuple[list[Prompt], list[Completion]]:
    """``total`` prompts, each with two completions (sides a and b, in that order)."""
    from annotate.models import Completion, Prompt

    prompts = Prompt.objects.bulk_create(
        [
            Prompt(
                messages=[{"role": "user", "content": f"Question {i}: {_text(rng, PROMPT_WORDS)}"}],
                content_hash=f"bench-prompt-{i}",
                source="bench",
            )
            for i in range(total)
        ],
        batch_size=BULK_BATCH,
    )
    completions = Completion.objects.bulk_create(
        [
            Completion(
                prompt=prompt,
                messages=[{"role": "assistant", "content": text}],
                text=text,
                content_hash=f"bench-completion-{prompt.pk}-{side}",
                model_name=f"bench-model-{side}",
            )
            for prompt in prompts
            for side in "ab"
            for text in [_text(rng, COMPLETION_WORDS)]
        ],
        batch_size=BULK_BATCH,
    )
    return prompts, completions


def _comparisons_create(
    prompts: Sequence[Prompt],
    completions: Sequence[Completion],
    *,
    history: int,
    k: int,
    gold: int,
    campaign_id: int,
) -> list[Comparison]:
    """One comparison per prompt; the first ``history`` already count k judgements, the last ``gold`` are gold.

    Gold items are spread among the open ones (every n-th), as marking them over time would leave them.
    """
    from annotate.limits import GOLD_TARGET_JUDGEMENTS
    from annotate.models import Comparison, Outcome

    open_ones = len(prompts) - history
    every = max(1, open_ones // gold) if gold else 0

    def is_gold(i: int) -> bool:
        return bool(every) and i >= history and (i - history) % every == 0 and (i - history) // every < gold

    return Comparison.objects.bulk_create(
        [
            Comparison(
                prompt=prompt,
                completion_a=completions[2 * i],
                completion_b=completions[2 * i + 1],
                content_hash=f"bench-comparison-{prompt.pk}",
                target_judgements=GOLD_TARGET_JUDGEMENTS if is_gold(i) else k,
                judgement_count=k if i < history else 0,
                gold_outcome=Outcome.A if is_gold(i) else "",
                campaign_id=campaign_id,
                source="bench",
            )
            for i, prompt in enumerate(prompts)
        ],
        batch_size=BULK_BATCH,
    )


def _history_create(
    rng: random.Random, judged: Sequence[Comparison], users: Sequence[AbstractBaseUser], *, k: int
) -> int:
    """k judged assignments and judgements for each of ``judged``; returns the last judgement id."""
    from django.utils import timezone

    from annotate.models import Assignment, Judgement

    now = timezone.now()
    past = [(c, users[(i + j) % len(users)]) for i, c in enumerate(judged) for j in range(k)]
    Assignment.objects.bulk_create(
        [
            Assignment(
                comparison=c,
                annotator=u,
                left_id=c.completion_a_id,
                right_id=c.completion_b_id,
                expires_at=now,
                judged_at=now,
            )
            for c, u in past
        ],
        batch_size=BULK_BATCH,
    )
    Judgement.objects.bulk_create(
        [
            Judgement(
                comparison=c,
                annotator=u,
                source="human",
                left_id=c.completion_a_id,
                right_id=c.completion_b_id,
                choice=choice,
                winner_id={"left": c.completion_a_id, "right": c.completion_b_id}.get(choice),
            )
            for c, u in past
            for choice in [rng.choice(CHOICES)]
        ],
        batch_size=BULK_BATCH,
    )
    return Judgement.objects.order_by("-id").values_list("id", flat=True).first() or 0
