"""Scripted annotators ("oracles") with one named, simple preference, so the loop can run unattended.

An oracle judges open comparisons through the same ``judgement_record`` a person's vote goes through, as a
user named ``oracle-<name>``, seeing the two sides in a random (seeded) order. It also scores a candidate
model version against a baseline on held-out prompts, which is how ``simulate_round`` measures whether
training on its judgements moved the model the way it prefers.

Oracles, by name:

- ``shorter``: prefers the shorter answer (in characters, surrounding white space ignored); equal is a tie.
- ``longer``: prefers the longer answer.
- ``no-phrase:TEXT``: prefers the answer that does not contain TEXT (case-insensitive); when both or
  neither contain it, falls back to ``shorter``.

The three above can be pleased by length alone: a model that learns to be short (or long) wins them
without getting better at anything else. The next three cannot. Each prefers the answer with one
property that no length buys; when both answers have it or neither does, the verdict is a tie. A
tie-break by length (the shorter, or the one nearer some length) would hand length a share of the
verdicts again; a tie is no training row, so only pairs that differ in the property teach, and the
length-controlled win rate of a version trained on them should rise with its plain rate.

- ``list``: prefers the answer laid out as a list: two lines or more that start with a bullet
  (``-``, ``*``, ``+``, ``•``) or a number (``1.``, ``2)``), then text.
- ``question``: prefers the answer that ends with a question mark (it asks the user something back).
- ``keyword:TEXT``: prefers the answer that contains TEXT (case-insensitive).
"""

from __future__ import annotations

import random
import re
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from django.contrib.auth.models import User
from django.db.models import F

from annotate import services as annotate_services
from annotate.models import Comparison, Judgement, Prompt
from annotate.selectors import prompts_tagged
from training.engine_settings import sampling_default
from training.models import ModelVersion
from training.win_rates import BOOTSTRAP_SAMPLES, LengthControlled, length_controlled_win_rate, wilson_interval

ORACLE_NAMES = ("shorter", "longer", "no-phrase:TEXT", "list", "question", "keyword:TEXT")
# Every oracle's account name starts with this, which is how the leaderboard tells oracles from people.
ORACLE_USERNAME_PREFIX = "oracle-"
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)])\s+\S", re.MULTILINE)
# One bulleted line is a sentence that starts with a dash (or a year, "2026. ..."), not a list.
LIST_MIN_ITEMS = 2


class Oracle(Protocol):
    @property
    def name(self) -> str: ...

    def prefer(self, a: str, b: str) -> int:
        """1 when ``a`` is better, -1 when ``b`` is, 0 for a tie."""
        ...


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


@dataclass(frozen=True)
class Shorter:
    name: str = "shorter"

    def prefer(self, a: str, b: str) -> int:
        return _sign(len(b.strip()) - len(a.strip()))


@dataclass(frozen=True)
class Longer:
    name: str = "longer"

    def prefer(self, a: str, b: str) -> int:
        return _sign(len(a.strip()) - len(b.strip()))


@dataclass(frozen=True)
class NoPhrase:
    phrase: str

    @property
    def name(self) -> str:
        return f"no-phrase:{self.phrase}"

    def prefer(self, a: str, b: str) -> int:
        needle = self.phrase.casefold()
        has_a, has_b = needle in a.casefold(), needle in b.casefold()
        if has_a != has_b:
            return -1 if has_a else 1
        return Shorter().prefer(a, b)


@dataclass(frozen=True)
class Criterion:
    """Prefers the answer that passes ``test``; when both or neither do, a tie (see the module doc)."""

    name: str
    test: Callable[[str], bool] = field(compare=False)

    def prefer(self, a: str, b: str) -> int:
        return int(self.test(a)) - int(self.test(b))


def is_list(text: str) -> bool:
    return len(_LIST_ITEM.findall(text)) >= LIST_MIN_ITEMS


def asks_back(text: str) -> bool:
    return text.rstrip().endswith("?")


def _contains(keyword: str) -> Callable[[str], bool]:
    needle = keyword.casefold()
    return lambda text: needle in text.casefold()


def oracle_named(name: str) -> Oracle:
    """The oracle called ``name`` (see the module doc); a clear error for an unknown one."""
    simple: dict[str, Oracle] = {
        "shorter": Shorter(),
        "longer": Longer(),
        "list": Criterion("list", is_list),
        "question": Criterion("question", asks_back),
    }
    if name in simple:
        return simple[name]
    kind, colon, text = name.partition(":")
    if kind in ("no-phrase", "keyword") and (not colon or not text.strip()):
        raise ValueError(f"the {kind} oracle needs a phrase: {kind}:TEXT, e.g. {kind}:Certainly")
    if kind == "no-phrase":
        return NoPhrase(phrase=text.strip())
    if kind == "keyword":
        return Criterion(f"keyword:{text.strip()}", _contains(text.strip()))
    raise ValueError(f"unknown oracle {name!r}; known: {', '.join(ORACLE_NAMES)}")


def choice_of(oracle: Oracle, left: str, right: str) -> str:
    """The judgement choice (``left``/``right``/``tie``) the oracle makes on two texts."""
    preference = oracle.prefer(left, right)
    return {1: Judgement.Choice.LEFT, -1: Judgement.Choice.RIGHT, 0: Judgement.Choice.TIE}[preference].value


def oracle_username(oracle: Oracle) -> str:
    """``oracle-<name>``, with characters Django usernames do not allow (spaces, colons) made into dashes."""
    return re.sub(r"[^\w.@+-]+", "-", f"{ORACLE_USERNAME_PREFIX}{oracle.name}")[:150]


def oracle_user(oracle: Oracle) -> User:
    """The oracle's annotator account (created once; its random password is never shown, so no one logs in)."""
    existing = User.objects.filter(username=oracle_username(oracle)).first()
    if existing is not None:
        return existing
    return annotate_services.annotator_create(username=oracle_username(oracle), password=secrets.token_urlsafe(32))


@dataclass(frozen=True)
class JudgingResult:
    judged: int
    choices: dict[str, int]  # choice -> count
    skipped: int  # comparisons that filled up meanwhile (someone else judged them)


def oracle_judge_open(*, oracle: Oracle, limit: int, tag: str | None = None, seed: int = 0) -> JudgingResult:
    """Judge up to ``limit`` open comparisons, newest first (the latest round's pairs are the most on-policy).

    Only comparisons on prompts tagged ``tag`` when one is given, and not ones this oracle judged before.
    Each vote goes through ``judgement_record``, so it is counted exactly once like a person's.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    user = oracle_user(oracle)
    rng = random.Random(seed)
    open_comparisons = (
        Comparison.objects.filter(judgement_count__lt=F("target_judgements"))
        .exclude(judgements__annotator=user)
        .select_related("prompt", "completion_a", "completion_b")
        .order_by("-id")
    )
    choices: Counter[str] = Counter()
    skipped = 0
    for comparison in open_comparisons.iterator(chunk_size=200):
        if sum(choices.values()) >= limit:
            break
        if tag is not None and tag not in (comparison.prompt.tags or []):
            continue
        # A person sees the sides in a random order; so does the oracle, to keep position statistics honest.
        left, right = comparison.completion_a, comparison.completion_b
        if rng.random() < 0.5:
            left, right = right, left
        choice = choice_of(oracle, left.text, right.text)
        try:
            annotate_services.judgement_record_scripted(
                annotator=user, comparison_id=comparison.pk, left_id=left.pk, right_id=right.pk, choice=choice
            )
        except annotate_services.JudgementConflict:
            skipped += 1
            continue
        choices[choice] += 1
    return JudgingResult(judged=sum(choices.values()), choices=dict(choices), skipped=skipped)


@dataclass(frozen=True)
class Sampling:
    """How evaluation completions are drawn; the same seed for both versions pairs their randomness per prompt."""

    temperature: float = sampling_default("temperature")
    top_p: float = sampling_default("top_p")
    # Shorter than a round's answers: held-out scoring samples two versions every round, and must stay quick on a CPU.
    max_new_tokens: int = 96
    seed: int = sampling_default("seed")


@dataclass(frozen=True)
class EvalResult:
    """The oracle's verdicts on ``candidate`` against ``baseline``, one completion each per held-out prompt."""

    candidate: str
    baseline: str
    wins: int
    losses: int
    ties: int
    candidate_mean_chars: float
    baseline_mean_chars: float
    length_controlled: LengthControlled | None = None  # None without a decisive verdict

    @property
    def prompts(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float | None:
        """Wins over decisive verdicts (ties shown apart)."""
        decisive = self.wins + self.losses
        return self.wins / decisive if decisive else None

    @property
    def win_rate_ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.wins, self.wins + self.losses)

    @property
    def score(self) -> float | None:
        """Wins plus half the ties, over all prompts."""
        return (self.wins + 0.5 * self.ties) / self.prompts if self.prompts else None


def held_out_prompts(*, tag: str, limit: int) -> list[Prompt]:
    """The first ``limit`` prompts (by id) tagged ``tag``."""
    return prompts_tagged(tag=tag, limit=limit)


def sample_texts(version: ModelVersion, prompts: Sequence[Prompt], sampling: Sampling) -> list[str]:
    """One completion of ``version`` per prompt, in order; nothing is stored."""
    from dpo_engine.generate import generate
    from dpo_engine.models import load_model, load_tokenizer

    model = load_model(version.path)
    tokenizer = load_tokenizer(version.path)
    results = generate(
        model,
        tokenizer,
        [p.messages for p in prompts],
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_new_tokens=sampling.max_new_tokens,
        seed=sampling.seed,
    )
    return [samples[0].text for samples in results]


def oracle_compare(
    *,
    oracle: Oracle,
    candidate: str,
    candidate_texts: Sequence[str],
    baseline: str,
    baseline_texts: Sequence[str],
    bootstrap: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> EvalResult:
    """Apply the oracle to paired completions (same prompt, same index); lengths as the oracles count them."""
    if len(candidate_texts) != len(baseline_texts):
        raise ValueError("the candidate and the baseline need one completion each per prompt")
    pairs = list(zip(candidate_texts, baseline_texts, strict=True))
    verdicts = [oracle.prefer(c, b) for c, b in pairs]
    decisive = [(verdict, len(c.strip()) - len(b.strip())) for verdict, (c, b) in zip(verdicts, pairs, strict=True)
                if verdict != 0]
    counts = Counter(verdicts)

    def mean_chars(texts: Sequence[str]) -> float:
        return sum(len(t.strip()) for t in texts) / len(texts) if texts else 0.0

    return EvalResult(
        candidate=candidate,
        baseline=baseline,
        wins=counts[1],
        losses=counts[-1],
        ties=counts[0],
        candidate_mean_chars=mean_chars(candidate_texts),
        baseline_mean_chars=mean_chars(baseline_texts),
        length_controlled=length_controlled_win_rate(
            [float(verdict > 0) for verdict, _ in decisive],
            [float(difference) for _, difference in decisive],
            bootstrap=bootstrap,
            seed=seed,
        ),
    )
