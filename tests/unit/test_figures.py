"""The run page's figure follows from what a scenario records in its rounds."""

from backend.store.models import RoundRow
from backend.web.figures import figure


def row(round: int, stats: dict, details: dict) -> RoundRow:
    return RoundRow(run_id=1, round=round, stats=stats, details=details, time=0.1, failures=0)


def test_a_guessing_round_gets_the_papers_figure():
    rounds = [
        row(1, {"avg": 40.0, "win": 26.7}, {"histogram": [1, 2]}),
        row(2, {"avg": 30.0, "win": 20.0}, {}),
    ]
    chart = figure(rounds[0], rounds)
    assert chart == {
        "kind": "answers",
        "round": 1,
        "histogram": [1, 2],
        "mean": 40.0,
        "target": 26.7,
        "rounds": [1, 2],
        "means": [40.0, 30.0],
        "targets": [26.7, 20.0],
    }


def test_a_social_round_gets_its_stances_and_the_spread():
    stats = {"seen": 30, "adopted": 12, "posts": 5, "reposts": 3, "stance": 0.25, "polarization": 0.5}
    first = row(1, {**stats, "seen": 10, "adopted": 10, "posts": 10, "reposts": 0}, {"stances": [0, 0, 4, 6]})
    second = row(2, stats, {"stances": [1, 0, 5, 6]})
    chart = figure(second, [first, second])
    assert chart is not None
    assert chart["kind"] == "spread"
    assert chart["stances"] == [1, 0, 5, 6]
    assert chart["bins"] == ["-1.0 to -0.5", "-0.5 to +0.0", "+0.0 to +0.5", "+0.5 to +1.0"]
    assert (chart["stance"], chart["polarization"]) == (0.25, 0.5)
    assert chart["rounds"] == [1, 2]
    assert chart["seen"] == [10, 30]
    assert chart["adopted"] == [10, 12]
    assert chart["posts"] == [10, 8]  # posts and reposts


def test_a_scenario_that_records_neither_has_no_figure():
    only = row(1, {"score": 3}, {"board": []})
    assert figure(only, [only]) is None
