"""Scripted annotators: their preferences, their account, and judging open comparisons through the real service."""

from __future__ import annotations

import pytest

from annotate.models import Judgement
from tests.annotate.factories import ComparisonFactory, CompletionFactory, PromptFactory
from training import oracles


def test_shorter_prefers_the_shorter_answer_ignoring_surrounding_space():
    shorter = oracles.oracle_named("shorter")
    assert shorter.prefer("Yes.", "Yes, certainly.") == 1
    assert shorter.prefer("Yes, certainly.", "Yes.") == -1
    assert shorter.prefer("  Yes.\n", "No!!") == 0


def test_longer_prefers_the_longer_answer():
    assert oracles.oracle_named("longer").prefer("Yes, certainly.", "Yes.") == 1


def test_no_phrase_prefers_the_answer_without_it_case_insensitively_else_the_shorter():
    oracle = oracles.oracle_named("no-phrase:As an AI")
    assert oracle.name == "no-phrase:As an AI"
    assert oracle.prefer("as an ai, I think so.", "I think so, and here is a much longer reason.") == -1
    assert oracle.prefer("Sure.", "Sure thing.") == 1, "neither has it: the shorter wins"
    assert oracle.prefer("AS AN AI: no.", "As an AI, no way.") == 1, "both have it: the shorter wins"


LIST = "Steps:\n- open the box\n- take it out"
PROSE = "Open the box, then take it out; that is all there is to it, really, nothing more to add at all."


def test_list_prefers_the_answer_laid_out_as_a_list_whatever_its_length():
    oracle = oracles.oracle_named("list")
    assert oracle.prefer(LIST, PROSE) == 1
    assert oracle.prefer(PROSE, LIST) == -1
    assert oracle.prefer(LIST, LIST + "\n- and enjoy it") == 0, "both lists: a tie, not the shorter"
    assert oracle.prefer("Yes.", PROSE) == 0, "neither a list: a tie, not the shorter"


@pytest.mark.parametrize(
    "text", ["1. open\n2. take", "  * open\n  * take", "1) open\n2) take", "\u2022 open\n\u2022 take"]
)
def test_list_items_may_be_bullets_or_numbers(text):
    assert oracles.is_list(text)


@pytest.mark.parametrize("text", ["- one item only", "-not an item\n-nor this", "2026. A year.\nAnd then"])
def test_one_item_or_dashes_without_a_space_are_no_list(text):
    assert not oracles.is_list(text)


def test_question_prefers_the_answer_that_asks_back():
    oracle = oracles.oracle_named("question")
    assert oracle.prefer("Which one do you mean?\n", PROSE) == 1
    assert oracle.prefer("Why? Because.", "Sure?") == -1, "only the last character counts"
    assert oracle.prefer("Sure.", PROSE) == 0


def test_keyword_prefers_the_answer_containing_it_case_insensitively():
    oracle = oracles.oracle_named("keyword: Python ")
    assert oracle.name == "keyword:Python"
    assert oracle.prefer("Use python.", PROSE) == 1
    assert oracle.prefer(PROSE, "PYTHON!") == -1
    assert oracle.prefer("Python.", "Python, Python and more Python.") == 0


def test_the_length_blind_oracles_ignore_length_entirely():
    for name in ("list", "question", "keyword:box"):
        oracle = oracles.oracle_named(name)
        for a, b in (("a", "a much longer answer"), ("a much longer answer", "a")):
            assert oracle.prefer(a, b) == 0, name


@pytest.mark.parametrize("name", ["kinder", "no-phrase", "no-phrase:", "no-phrase:  ", "keyword", "keyword: "])
def test_unknown_or_incomplete_names_are_refused_clearly(name):
    with pytest.raises(ValueError, match="oracle"):
        oracles.oracle_named(name)


def test_choice_maps_the_preference_onto_the_sides():
    shorter = oracles.Shorter()
    assert oracles.choice_of(shorter, "a", "bb") == "left"
    assert oracles.choice_of(shorter, "bb", "a") == "right"
    assert oracles.choice_of(shorter, "a", "b") == "tie"


def test_the_username_is_a_valid_django_username():
    assert oracles.oracle_username(oracles.oracle_named("no-phrase:As an AI")) == "oracle-no-phrase-As-an-AI"


def _open_comparison(prompt_tags: list[str], texts: tuple[str, str] = ("short", "much longer answer")):
    prompt = PromptFactory(tags=prompt_tags)
    return ComparisonFactory(
        prompt=prompt,
        completion_a=CompletionFactory(prompt=prompt, text=texts[0]),
        completion_b=CompletionFactory(prompt=prompt, text=texts[1]),
    )


@pytest.mark.django_db
def test_judging_takes_open_comparisons_on_tagged_prompts_newest_first_up_to_the_limit():
    older = _open_comparison(["oracle-train"])
    newer = _open_comparison(["oracle-train"])
    held_out = _open_comparison(["oracle-eval"])
    result = oracles.oracle_judge_open(oracle=oracles.Shorter(), limit=1, tag="oracle-train")
    assert result.judged == 1
    judged = Judgement.objects.get()
    assert judged.comparison == newer
    assert judged.annotator.username == "oracle-shorter"
    assert judged.winner.text == "short"
    assert judged.source == "human", "the vote went through judgement_record like a person's"

    again = oracles.oracle_judge_open(oracle=oracles.Shorter(), limit=10, tag="oracle-train")
    assert again.judged == 1
    assert set(Judgement.objects.values_list("comparison_id", flat=True)) == {older.pk, newer.pk}
    older.refresh_from_db()
    held_out.refresh_from_db()
    assert (older.judgement_count, held_out.judgement_count) == (1, 0)


@pytest.mark.django_db
def test_sides_are_shown_in_a_seeded_random_order():
    for _ in range(40):
        _open_comparison(["t"])
    oracles.oracle_judge_open(oracle=oracles.Shorter(), limit=40, tag="t", seed=1)
    left_wins = Judgement.objects.filter(choice="left").count()
    assert 8 < left_wins < 32, "the shorter answer is on the left about half the time"


def test_compare_counts_wins_losses_and_ties_per_prompt():
    result = oracles.oracle_compare(
        oracle=oracles.Shorter(),
        candidate="new",
        candidate_texts=["a", "bbb", "cc", "d"],
        baseline="base",
        baseline_texts=["aa", "b", "cc", "dd"],
    )
    assert (result.wins, result.losses, result.ties, result.prompts) == (2, 1, 1, 4)
    assert result.win_rate == pytest.approx(2 / 3)
    assert result.win_rate_ci is not None
    assert result.score == pytest.approx(2.5 / 4)
    assert result.candidate_mean_chars == pytest.approx(7 / 4)
    assert result.length_controlled is None, "three verdicts are too few to control for length"


def test_compare_of_a_length_oracle_controls_for_length():
    # The candidate is usually the shorter, and the oracle prefers the shorter: its plain rate is all length.
    lengths = [(c, b) for c in range(5, 45, 3) for b in range(20, 60, 4) if c != b]
    result = oracles.oracle_compare(
        oracle=oracles.Shorter(),
        candidate="new",
        candidate_texts=["x" * c for c, _ in lengths],
        baseline="base",
        baseline_texts=["x" * b for _, b in lengths],
        bootstrap=50,
    )
    assert result.length_controlled is not None
    assert result.win_rate is not None
    assert result.win_rate > 0.75
    assert result.length_controlled.win_rate == pytest.approx(0.5, abs=0.1)
