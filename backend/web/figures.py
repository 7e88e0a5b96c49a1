"""The run page's figures, built from one round's recorded details and every round's statistics.

Which figure a run gets follows from what its scenario records, not from its name, so a
third-party scenario that records the same details gets the same figure: a histogram of answers
with `avg` and `win` (the paper's figure for the guessing game), or a histogram of stances with
`seen`, `adopted` and posts (how news spread over the social network). A scenario that records
neither has no figure.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from backend.services import RoundRow, RoundStats

__all__ = ["figure"]


def figure(detail: RoundRow, rounds: Sequence[RoundStats]) -> dict[str, Any] | None:
    """The data a figure of round `detail` is drawn from (JSON for the page's charts.js)."""
    details, stats = detail.details, detail.stats
    over = [r.round for r in rounds]
    if "histogram" in details:
        return {
            "kind": "answers",
            "round": detail.round,
            "histogram": details["histogram"],
            "mean": stats.get("avg"),
            "target": stats.get("win"),
            "rounds": over,
            "means": [r.stats.get("avg") for r in rounds],
            "targets": [r.stats.get("win") for r in rounds],
        }
    if "stances" in details:
        bins = len(details["stances"])
        edges = [-1 + 2 * i / bins for i in range(bins + 1)]  # the scenario's bins split [-1, 1] evenly
        return {
            "kind": "spread",
            "round": detail.round,
            "stances": details["stances"],
            "bins": [f"{a:+.1f} to {b:+.1f}" for a, b in itertools.pairwise(edges)],
            "stance": stats.get("stance"),
            "polarization": stats.get("polarization"),
            "rounds": over,
            "seen": [r.stats.get("seen") for r in rounds],
            "adopted": [r.stats.get("adopted") for r in rounds],
            "posts": [(r.stats.get("posts") or 0) + (r.stats.get("reposts") or 0) for r in rounds],
        }
    return None
