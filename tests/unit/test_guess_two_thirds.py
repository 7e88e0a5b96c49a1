import math
from fractions import Fraction

import pytest

from agents.core import ActionBatch
from agents.scenarios import SCENARIOS
from agents.scenarios.guess_two_thirds import GuessParams, GuessTwoThirds


def game(rounds: int = 3, **params) -> GuessTwoThirds:
    return GuessTwoThirds(GuessParams(**params), rounds=rounds, population=10)


def test_registered_under_its_name():
    assert SCENARIOS.get("guess_two_thirds") is GuessTwoThirds


def test_hand_computed_round():
    batch = ActionBatch(range(10, 17), [10, 20, 30, 40, 5, "x", 150], errors={14: "ValueError: boom"})
    result = game().apply(1, batch)
    # valid: 10, 20, 30, 40 (14 failed, "x" is not a number, 150 is above max_value)
    assert result.stats["cnt"] == 4
    assert result.stats["avg"] == 25
    assert result.stats["win"] == pytest.approx(50 / 3)
    assert result.stats["med"] == 25
    assert result.stats["std"] == pytest.approx(math.sqrt(125))
    assert (result.stats["max"], result.stats["min"]) == (40, 10)
    assert result.details["winners"] == [11]
    assert result.details["winner_count"] == 1
    assert result.details["winning_answer"] == 20
    histogram = result.details["histogram"]
    assert len(histogram) == 101
    assert sum(histogram) == 4
    assert [histogram[v] for v in (10, 20, 30, 40)] == [1, 1, 1, 1]


def test_ties_all_win_and_ratio_is_honoured():
    batch = ActionBatch(range(4), [0, 50, 50, 100])  # mean 50, target 25 with ratio 1/2
    result = game(ratio=Fraction(1, 2)).apply(1, batch)
    assert result.stats["win"] == 25
    assert result.details["winners"] == [0, 1, 2]
    assert result.details["winner_count"] == 3


def test_a_round_without_valid_answers():
    result = game().apply(1, ActionBatch(range(2), [None, None], errors={0: "x", 1: "y"}))
    assert result.stats["cnt"] == 0
    assert result.stats["win"] is None
    assert sum(result.details["histogram"]) == 0


def test_observations_show_last_round_only_when_asked():
    shown, hidden = game(), game(show_last_result=False)
    for g in (shown, hidden):
        assert g.observe(1).public["last"] is None
        g.apply(1, ActionBatch(range(2), [30, 60]))
    assert shown.observe(2).public["last"]["win"] == 30
    assert hidden.observe(2).public["last"] is None
    public = shown.observe(2).public
    assert (public["ratio"], public["ratio_text"], public["max_value"]) == (2 / 3, "2/3", 100)


def test_non_integer_answers_fall_in_the_nearest_bin():
    result = game(max_value=10).apply(1, ActionBatch(range(3), [2.4, 2.6, 9.9]))
    assert result.details["histogram"] == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1]


def test_state_round_trips_for_resumed_runs():
    g = game()
    g.apply(1, ActionBatch(range(2), [30, 60]))
    fresh = game()
    fresh.set_state(g.get_state())
    assert fresh.observe(2) == g.observe(2)


def test_done_after_the_rounds_asked_for():
    g = game(rounds=2)
    assert not g.done(1)
    assert g.done(2)


@pytest.mark.parametrize(("agents", "max_value"), [(1, 100), (2, 100), (7, 1), (1001, 100), (20_000, 100)])
def test_whole_answers_are_summarised_from_their_histogram_as_from_the_answers(agents, max_value):
    """An array of valid whole answers (what columns give) is read from its histogram; the list of
    the same answers as floats goes the general way. Equal statistics, winners and ties."""
    import numpy as np

    answers = np.random.default_rng(agents).integers(0, max_value + 1, agents)
    answers[: agents // 3] = answers[0]  # ties
    fast = game(max_value=max_value).apply(1, ActionBatch(range(5, 5 + agents), answers))
    general = game(max_value=max_value).apply(
        1, ActionBatch(range(5, 5 + agents), [float(a) for a in answers])
    )
    assert fast.details == general.details
    assert {k: v for k, v in fast.stats.items() if k != "std"} == {
        k: v for k, v in general.stats.items() if k != "std"
    }
    assert fast.stats["std"] == pytest.approx(general.stats["std"], rel=1e-12)
