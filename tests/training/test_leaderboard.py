"""The leaderboard: Bradley-Terry ratings with bootstrap intervals, records against the parent, position bias."""

from __future__ import annotations

import itertools
import re
from statistics import NormalDist

import numpy as np
import pytest
from django.contrib.auth.models import User

from annotate import formats
from annotate.filters import JudgementFilter
from annotate.models import Comparison, Completion, Judgement, Prompt, Purpose
from tests.annotate.factories import StaffFactory, UserFactory
from training.leaderboard import ELO_PER_NAT, bradley_terry, leaderboard, wilson_interval
from training.models import ModelVersion

pytestmark = pytest.mark.django_db

_serial = itertools.count()


def _versions(*names: str) -> list[ModelVersion]:
    """The default version first (its row comes from a migration, which a flushed database may have lost)."""
    ModelVersion.objects.filter(is_default=True).delete()
    made = [ModelVersion.objects.create(name=names[0], path=names[0], is_default=True)]
    for name in names[1:]:
        made.append(ModelVersion.objects.create(name=name, path=name, parent=made[-1]))
    return made


def _completion(prompt: Prompt, model_name: str) -> Completion:
    text = f"{model_name} answer {next(_serial)}"
    return Completion.objects.create(
        prompt=prompt,
        text=text,
        messages=[{"role": "assistant", "content": text}],
        model_name=model_name,
        model_version=ModelVersion.objects.filter(name=model_name).first(),
        content_hash=formats.content_hash("completion", prompt.id, text),
    )


def _judge(games: list[tuple[str, str, str]], annotator_name: str = "judge") -> None:
    """Bulk-record one human judgement per (left version, right version, choice), each on its own comparison."""
    annotator: User = UserFactory(username=annotator_name)  # type: ignore[assignment]
    prompt = Prompt.objects.create(
        messages=[{"role": "user", "content": "Q"}], content_hash=formats.content_hash("prompt", next(_serial))
    )
    names = {name for left, right, _ in games for name in (left, right)}
    answer = {name: _completion(prompt, name) for name in names}
    twin = {name: _completion(prompt, name) for name in names}  # the right side when a version meets itself
    comparisons = Comparison.objects.bulk_create(
        Comparison(
            prompt=prompt,
            completion_a=answer[left],
            completion_b=twin[right] if left == right else answer[right],
            judgement_count=1,
            content_hash=f"comparison-{next(_serial)}",
        )
        for left, right, _ in games
    )
    Judgement.objects.bulk_create(
        Judgement(
            comparison=comparison,
            annotator=annotator,
            source="human",
            left=comparison.completion_a,
            right=comparison.completion_b,
            choice=choice,
            winner={"left": comparison.completion_a, "right": comparison.completion_b}.get(choice),
        )
        for comparison, (_, _, choice) in zip(comparisons, games, strict=True)
    )


def _simulated(strengths: dict[str, float], games_per_pair: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """Bradley-Terry games with the true ratings ``strengths``; sides are shuffled, so there is no position bias."""
    rng = np.random.default_rng(seed)
    games = []
    for a, b in itertools.combinations(strengths, 2):
        p_a = 1 / (1 + 10 ** ((strengths[b] - strengths[a]) / 400))
        for _ in range(games_per_pair):
            a_wins = rng.random() < p_a
            left, right = (a, b) if rng.random() < 0.5 else (b, a)
            games.append((left, right, "left" if (left == a) == a_wins else "right"))
    return games


def _by_name(board):  # type: ignore[no-untyped-def]
    return {s.name: s for s in board.standings}


TRUE = {"base": 1000.0, "v1": 1150.0, "v2": 1350.0}


def test_known_strengths_are_recovered_in_order_and_roughly_in_size():
    _versions("base", "v1", "v2")
    _judge(_simulated(TRUE, games_per_pair=1500))
    board = leaderboard(bootstrap=100)
    assert [s.name for s in board.standings] == ["v2", "v1", "base"]
    assert [s.rank for s in board.standings] == [1, 2, 3]
    rows = _by_name(board)
    assert board.anchor == "base"
    assert rows["base"].rating == pytest.approx(1000.0)
    assert rows["v1"].rating == pytest.approx(1150, abs=35)
    assert rows["v2"].rating == pytest.approx(1350, abs=35)
    assert board.judgements == board.rated_judgements == 4500


def test_intervals_contain_the_estimate_and_shrink_with_more_data():
    _versions("base", "v1", "v2")
    _judge(_simulated(TRUE, games_per_pair=60, seed=1), annotator_name="first")
    small = _by_name(leaderboard(bootstrap=200, seed=3))
    _judge(_simulated(TRUE, games_per_pair=1200, seed=2), annotator_name="second")
    large = _by_name(leaderboard(bootstrap=200, seed=3))
    for rows in (small, large):
        for name in ("v1", "v2"):
            assert rows[name].ci_low < rows[name].rating < rows[name].ci_high
        assert rows["base"].ci_low == rows["base"].rating == rows["base"].ci_high == 1000.0, "the anchor is pinned"
    for name in ("v1", "v2"):
        assert large[name].ci_high - large[name].ci_low < 0.5 * (small[name].ci_high - small[name].ci_low)


def test_the_bootstrap_is_seeded():
    _versions("base", "v1")
    _judge(_simulated({"base": 1000, "v1": 1100}, games_per_pair=100))
    first, second = _by_name(leaderboard(seed=7)), _by_name(leaderboard(seed=7))
    assert (first["v1"].ci_low, first["v1"].ci_high) == (second["v1"].ci_low, second["v1"].ci_high)


def test_a_tie_counts_half_a_win_each_way_and_both_bad_is_a_tie():
    _versions("base", "v1")
    # v1: 10 wins, 0 losses, 10 ties and 10 both-bad = 20 wins to 10, odds 2:1.
    _judge(
        [("v1", "base", "left")] * 5
        + [("base", "v1", "right")] * 5
        + [("v1", "base", "tie")] * 10
        + [("base", "v1", "both_bad")] * 10
    )
    rows = _by_name(leaderboard(bootstrap=0))
    assert rows["v1"].rating == pytest.approx(1000 + ELO_PER_NAT * np.log(2), abs=4), "the prior barely pulls"
    assert rows["v1"].vs_parent is not None
    record = rows["v1"].vs_parent
    assert (record.wins, record.losses, record.ties, record.both_bad) == (10, 0, 20, 10)
    assert record.win_rate == 1.0, "the win rate is over decisive judgements; ties are shown apart"
    assert (rows["base"].record.wins, rows["base"].record.losses, rows["base"].record.ties) == (0, 10, 20)


def test_only_ties_give_equal_ratings():
    _versions("base", "v1")
    _judge([("v1", "base", "tie")] * 8 + [("base", "v1", "both_bad")] * 4)
    rows = _by_name(leaderboard(bootstrap=20))
    assert rows["v1"].rating == pytest.approx(1000.0)
    assert rows["v1"].vs_parent is not None
    assert rows["v1"].vs_parent.win_rate is None


def test_a_version_that_won_everything_gets_a_large_finite_rating():
    _versions("base", "v1")
    _judge([("v1", "base", "left")] * 64)
    rating = _by_name(leaderboard(bootstrap=20))["v1"].rating
    assert rating is not None
    assert 1400 < rating < 3000


def test_position_bias_is_the_left_share_of_decisive_human_judgements():
    _versions("base", "v1")
    _judge([("base", "v1", "left")] * 30 + [("v1", "base", "left")] * 30 + [("base", "v1", "right")] * 20)
    _judge([("v1", "base", "tie")] * 7, annotator_name="other")
    bias = leaderboard(bootstrap=0).position_bias
    assert (bias.left_wins, bias.decisive) == (60, 80)
    assert bias.rate == 0.75
    assert bias.ci is not None
    assert bias.ci[0] < 0.75 < bias.ci[1]


def test_versions_without_judgements_are_listed_unrated_after_the_rated():
    _versions("base", "v1", "v2")
    _judge([("base", "v1", "right")] * 5 + [("base", "v1", "left")] * 3)
    board = leaderboard(bootstrap=20)
    assert [s.name for s in board.standings] == ["v1", "base", "v2"]
    v2 = board.standings[-1]
    assert (v2.rating, v2.rank, v2.ci_low, v2.record.judgements) == (None, None, None, 0)
    assert v2.vs_parent is not None
    assert v2.vs_parent.judgements == 0


def test_no_judgements_at_all_gives_an_empty_but_complete_board():
    _versions("base", "v1")
    board = leaderboard()
    assert board.anchor is None
    assert board.judgements == 0
    assert [s.rating for s in board.standings] == [None, None]
    assert board.position_bias.rate is None


def test_a_completion_counts_for_the_version_that_generated_it_not_for_a_name_it_shares():
    _, v1 = _versions("base", "v1")
    _judge([("base", "v1", "left")] * 3)
    Completion.objects.filter(model_version=v1).update(model_version=None)
    assert leaderboard(bootstrap=0).judgements == 0


def test_judgements_between_unregistered_or_identical_versions_and_imported_ones_are_left_out():
    _versions("base", "v1")
    _judge([("base", "v1", "left")] * 4 + [("base", "stranger", "left")] * 9 + [("v1", "v1", "left")] * 3)
    Judgement.objects.filter(annotator__isnull=False).update(annotator=None, source="import.jsonl")
    _judge([("base", "v1", "left")] * 2, annotator_name="person")
    assert leaderboard(bootstrap=0).judgements == 2


def test_excluded_annotators_do_not_count():
    _versions("base", "v1")
    _judge([("base", "v1", "left")] * 4, annotator_name="keep")
    _judge([("base", "v1", "right")] * 6, annotator_name="oracle-shorter")
    board = leaderboard(judgement_filter=JudgementFilter(exclude_annotators=("oracle-shorter",)), bootstrap=0)
    assert board.judgements == 4
    assert board.position_bias.decisive == 4


def test_a_version_not_linked_to_the_anchor_is_not_rated():
    _versions("base", "v1", "v2")
    ModelVersion.objects.create(name="other", path="other")
    _judge([("base", "v1", "left")] * 3 + [("v2", "other", "left")] * 5)
    rows = _by_name(leaderboard(bootstrap=0))
    assert rows["base"].rating is not None
    assert rows["v1"].rating is not None
    assert rows["v2"].rating is None
    assert rows["other"].rating is None
    assert rows["v2"].record.wins == 5


def test_bradley_terry_matches_the_closed_form_for_two_players():
    wins = np.array([[0.0, 300.0], [100.0, 0.0]])
    theta = bradley_terry(wins, prior_sd=1e6)
    assert theta[0] - theta[1] == pytest.approx(np.log(3.0), rel=1e-6)


# Evaluation rounds ----------------------------------------------------------------------


def _evaluate(
    version: str, parent: str, verdicts: list[str], *, judge: str = "person", lengths: tuple[int, int] = (20, 20)
) -> None:
    """One evaluation comparison per verdict ("win", "loss", "tie" for ``version``), sides alternating.

    ``lengths`` are the characters of the version's and the parent's answers.
    """
    annotator: User = UserFactory(username=judge)  # type: ignore[assignment]
    for n, verdict in enumerate(verdicts):
        prompt = Prompt.objects.create(
            messages=[{"role": "user", "content": "Q"}], content_hash=formats.content_hash("prompt", next(_serial))
        )
        mine = _sized_completion(prompt, version, lengths[0])
        theirs = _sized_completion(prompt, parent, lengths[1])
        left, right = (mine, theirs) if n % 2 == 0 else (theirs, mine)
        comparison = Comparison.objects.create(
            prompt=prompt,
            completion_a=left,
            completion_b=right,
            judgement_count=1,
            purpose=Purpose.EVALUATION,
            content_hash=f"comparison-{next(_serial)}",
        )
        winner = {"win": mine, "loss": theirs}.get(verdict)
        choice = "tie" if winner is None else ("left" if winner == left else "right")
        Judgement.objects.create(
            comparison=comparison, annotator=annotator, source="human", left=left, right=right, choice=choice,
            winner=winner,
        )


def _sized_completion(prompt: Prompt, model_name: str, chars: int) -> Completion:
    text = f"{next(_serial):06d}".ljust(chars, "x")
    return Completion.objects.create(
        prompt=prompt,
        text=text,
        messages=[{"role": "assistant", "content": text}],
        model_name=model_name,
        model_version=ModelVersion.objects.get(name=model_name),
        content_hash=formats.content_hash("completion", prompt.id, text),
    )


def test_evaluation_rounds_are_shown_per_judge_with_a_wilson_interval_people_first():
    _versions("base", "v1")
    _evaluate("v1", "base", ["win"] * 6 + ["loss"] * 2 + ["tie"], judge="ann")
    _evaluate("v1", "base", ["win"] * 5, judge="oracle-shorter")
    rows = _by_name(leaderboard(bootstrap=20))
    people, oracle = rows["v1"].evaluations
    assert (people.judge, oracle.judge) == ("people", "oracle-shorter")
    assert (people.record.wins, people.record.losses, people.record.ties) == (6, 2, 1)
    assert people.record.win_rate_ci == wilson_interval(6, 8)
    assert (oracle.record.wins, oracle.record.losses) == (5, 0)
    assert rows["base"].evaluations == []


def test_with_equal_lengths_the_length_controlled_rate_is_the_plain_rate():
    _versions("base", "v1")
    _evaluate("v1", "base", ["win"] * 9 + ["loss"] * 3, lengths=(40, 40))
    (people,) = _by_name(leaderboard(bootstrap=20))["v1"].evaluations
    assert people.length_controlled is not None
    assert people.length_controlled.win_rate == pytest.approx(0.75, abs=0.02)
    assert (people.mean_chars, people.parent_mean_chars) == (40, 40)


def test_a_win_that_only_length_explains_is_not_a_length_controlled_win():
    _versions("base", "v1")
    # The judge takes the shorter answer; v1's answers are 40 characters shorter on average, spread normally.
    spread = NormalDist(-40, 40)
    for n in range(30):
        difference = round(spread.inv_cdf((n + 0.5) / 30))
        _evaluate("v1", "base", ["win" if difference < 0 else "loss"], lengths=(100 + difference, 100))
    (people,) = _by_name(leaderboard(bootstrap=50))["v1"].evaluations
    assert people.record.win_rate == pytest.approx(25 / 30)
    lc = people.length_controlled
    assert lc is not None
    assert lc.win_rate == pytest.approx(0.5, abs=0.1)
    assert lc.ci_low < 0.5 < lc.ci_high


def test_the_training_record_leaves_evaluation_out_while_the_ratings_count_both():
    _versions("base", "v1")
    _judge([("v1", "base", "left")] * 3)
    _evaluate("v1", "base", ["loss"] * 5)
    board = leaderboard(bootstrap=0)
    v1 = _by_name(board)["v1"]
    assert v1.vs_parent is not None
    assert (v1.vs_parent.wins, v1.vs_parent.losses) == (3, 0)
    assert (v1.record.wins, v1.record.losses) == (3, 5)
    assert (board.judgements, board.evaluation_judgements) == (8, 5)


def test_the_mean_length_counts_each_judged_completion_once_and_only_judged_ones():
    _versions("base", "v1")
    _evaluate("v1", "base", ["win"], lengths=(10, 70))
    _evaluate("v1", "base", ["win"], lengths=(30, 70), judge="oracle-shorter")
    twice = Comparison.objects.select_related("completion_a", "completion_b").last()
    assert twice is not None
    Judgement.objects.create(
        comparison=twice, annotator=UserFactory(), source="human", left=twice.completion_a,
        right=twice.completion_b, choice="tie",
    )
    _sized_completion(twice.prompt, "v1", 1000)  # never judged
    rows = _by_name(leaderboard(bootstrap=0))
    assert rows["v1"].mean_chars == pytest.approx(20.0)
    assert rows["base"].mean_chars == pytest.approx(70.0)


def test_the_page_shows_the_evaluation_win_rate_its_interval_the_length_controlled_rate_and_lengths(client):
    client.force_login(StaffFactory())
    _versions("base", "v1")
    for verdict, mine in [("win", 30)] * 9 + [("loss", 30), ("loss", 120), ("win", 120)]:
        _evaluate("v1", "base", [verdict], lengths=(mine, 90))
    page = client.get("/training/leaderboard/").content.decode()
    interval = wilson_interval(10, 12)
    assert interval is not None
    shown = f"{100 * interval[0]:.0f}%\N{EN DASH}{100 * interval[1]:.0f}%; 10\N{EN DASH}2"
    assert re.search(rf"people:</span>\s*<strong>83%</strong> <span[^>]*>\({shown}", page)
    assert re.search(r'length-controlled <strong data-testid="length-controlled">\d+%</strong>', page)
    assert re.search(r'data-testid="mean-chars">45 <span', page)
    assert "45 vs 90 chars" in page


def test_the_page_says_when_length_cannot_be_controlled_for(client):
    client.force_login(StaffFactory())
    _versions("base", "v1")
    _evaluate("v1", "base", ["win"] * 12, lengths=(30, 90))
    page = client.get("/training/leaderboard/").content.decode()
    assert "<strong>100%</strong>" in page
    assert "not length-controlled: its answer was the shorter in every decisive judgement" in page


def test_an_evaluation_comparison_not_against_the_parent_is_no_head_to_head():
    _versions("base", "v1", "v2")
    _evaluate("v2", "base", ["win"] * 3)
    rows = _by_name(leaderboard(bootstrap=0))
    assert rows["v2"].evaluations == []
    assert rows["v2"].record.wins == 3, "it still counts for the ratings"


def test_left_out_annotators_are_left_out_of_evaluation_rounds_too():
    _versions("base", "v1")
    _evaluate("v1", "base", ["win"] * 3, judge="keep")
    _evaluate("v1", "base", ["loss"] * 4, judge="oracle-longer")
    board = leaderboard(judgement_filter=JudgementFilter(exclude_annotators=("oracle-longer",)), bootstrap=0)
    (people,) = _by_name(board)["v1"].evaluations
    assert (people.judge, people.record.wins, people.record.losses) == ("people", 3, 0)
