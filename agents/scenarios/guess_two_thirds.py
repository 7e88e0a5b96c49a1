"""Guess ratio × the average: the game of the paper's experiments.

Every agent answers a number in 0..max_value; the target is `ratio` × the mean of the valid
answers, and the agents closest to it win. With ratio 2/3 and rational players the only
equilibrium is 0; how fast a population gets there shows how deeply its members reason.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, Field

from agents.core import ActionBatch, NoParams
from agents.scenarios.base import Observations, RoundResult, Scenario

__all__ = ["GuessParams", "GuessTwoThirds"]

# Winners are listed up to this many: with level-k players a whole level can tie.
MAX_WINNERS_LISTED = 100


def _proper_fraction(value: Fraction) -> Fraction:
    value = value.limit_denominator(1_000_000)  # 0.67 means 67/100, not a binary float's fraction
    if not 0 < value < 1:
        raise ValueError(f"ratio must lie strictly between 0 and 1, not {value}")
    return value


class GuessParams(NoParams):
    ratio: Annotated[Fraction, AfterValidator(_proper_fraction)] = Field(
        Fraction(2, 3), description='target = ratio × mean; e.g. "2/3", "1/2", "51/100", 0.67'
    )
    max_value: int = Field(100, ge=1, le=1_000_000, description="answers are 0..max_value")
    show_last_result: bool = Field(True, description="show agents last round's statistics")


class GuessTwoThirds(Scenario):
    """Per round: `win` (the target), `cnt` (valid answers), `avg`, `med`, `std`, `max`, `min`;
    details: a histogram over 0..max_value and the winning agents."""

    Params = GuessParams
    stat_names = ("win", "cnt", "avg", "med", "std", "max", "min")
    params: GuessParams

    def __init__(self, params: GuessParams, *, rounds: int, population: int, seed: int = 0) -> None:
        super().__init__(params, rounds=rounds, population=population, seed=seed)
        self.last: dict[str, Any] | None = None

    def observe(self, round: int) -> Observations:
        p = self.params
        public = {
            "game": "guess_two_thirds",
            "ratio": float(p.ratio),
            "ratio_text": str(p.ratio),
            "max_value": p.max_value,
            "round": round,
            "rounds": self.rounds,
            "last": self.last if p.show_last_result else None,
        }
        return Observations(public)

    def apply(self, round: int, actions: ActionBatch) -> RoundResult:
        if self._all_whole_and_valid(actions):
            result = self._summarise_counts(round, actions.ids.start, np.asarray(actions.payloads))
            self.last = dict(result.stats)
            return result
        answers, valid = self._answers(actions)
        ids = np.arange(actions.ids.start, actions.ids.stop)[valid]
        answers = answers[valid]
        if answers.size == 0:
            stats: dict[str, float | int | None] = dict.fromkeys(self.stat_names)
            stats["cnt"] = 0
            result = RoundResult(round, stats, {"histogram": [0] * (self.params.max_value + 1)})
        else:
            result = self._summarise(round, ids, answers)
        self.last = dict(result.stats)
        return result

    def _all_whole_and_valid(self, actions: ActionBatch) -> bool:
        """Whether every answer is an integer in 0..max_value from an agent that did not fail
        (what rule-based agents give, as one array)."""
        p = actions.payloads
        return (
            isinstance(p, np.ndarray)
            and p.dtype.kind in "iu"
            and p.size > 0
            and not actions.errors
            and p.min() >= 0
            and p.max() <= self.params.max_value
        )

    def _answers(self, actions: ActionBatch) -> tuple[np.ndarray, np.ndarray]:
        """Answers as floats, and which are valid: a number in 0..max_value from an agent that
        did not fail."""
        payloads = actions.payloads
        if isinstance(payloads, np.ndarray):
            answers = payloads.astype(np.float64, copy=False)
        elif set(map(type, payloads)) <= {int, float}:
            answers = np.asarray(payloads, dtype=np.float64)
        else:
            answers = np.fromiter(
                (p if type(p) in (int, float) else np.nan for p in payloads), np.float64, len(payloads)
            )
        with np.errstate(invalid="ignore"):
            valid = (answers >= 0) & (answers <= self.params.max_value)
        if actions.errors:
            valid[np.fromiter(actions.errors, np.int64) - actions.ids.start] = False
        return answers, valid

    def _summarise(self, round: int, ids: np.ndarray, answers: np.ndarray) -> RoundResult:
        mean = float(answers.mean())
        target = float(self.params.ratio) * mean
        distance = np.abs(answers - target)
        winners = ids[distance == distance.min()]
        stats: dict[str, float | int | None] = {
            "win": target,
            "cnt": int(answers.size),
            "avg": mean,
            "med": float(np.median(answers)),
            "std": float(answers.std()),
            "max": float(answers.max()),
            "min": float(answers.min()),
        }
        histogram = np.bincount(np.rint(answers).astype(np.int64), minlength=self.params.max_value + 1)
        details = {
            "histogram": histogram.tolist(),
            "winners": winners[:MAX_WINNERS_LISTED].tolist(),
            "winner_count": int(winners.size),
            "winning_answer": float(answers[distance.argmin()]),
        }
        return RoundResult(round, stats, details)

    def _summarise_counts(self, round: int, first: int, answers: np.ndarray) -> RoundResult:
        """`_summarise` of whole answers that are all valid, read from their histogram: a few
        passes over the answers instead of a sort, which counts at a million agents. The same
        statistics; `std` may differ from the sorted way in its last digits."""
        count = answers.size
        histogram = np.bincount(answers, minlength=self.params.max_value + 1)
        values = np.arange(histogram.size, dtype=np.float64)
        taken = np.flatnonzero(histogram)
        # The integer sum is exact, as numpy's float sum of small integers is: the same mean.
        mean = int(histogram @ np.arange(histogram.size)) / count
        below = np.cumsum(histogram)
        middle = np.searchsorted(below, [(count - 1) // 2, count // 2], side="right")
        target = float(self.params.ratio) * mean
        distance = np.abs(values[taken] - target)
        winning = taken[distance == distance.min()]
        won = answers == winning[0] if winning.size == 1 else np.isin(answers, winning)
        winners = np.flatnonzero(won)
        stats: dict[str, float | int | None] = {
            "win": target,
            "cnt": int(count),
            "avg": mean,
            "med": float(middle.mean()),
            "std": float(np.sqrt(histogram[taken] @ (values[taken] - mean) ** 2 / count)),
            "max": float(taken[-1]),
            "min": float(taken[0]),
        }
        details = {
            "histogram": histogram.tolist(),
            "winners": (winners[:MAX_WINNERS_LISTED] + first).tolist(),
            "winner_count": int(winners.size),
            "winning_answer": float(answers[winners[0]]),
        }
        return RoundResult(round, stats, details)

    def get_state(self) -> Any:
        return {"last": self.last}

    def set_state(self, state: Any) -> None:
        self.last = state["last"]
