"""Comparing runs: a statistic's mean per round with a 95 % confidence band across replicates, and
each factor's effect on its final value, as a difference of means with a confidence interval.

Pure functions over numbers (no store): each run is given as its statistic's values by round.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Band", "Effect", "band", "effect", "t_quantile"]

# Student's t, 97.5th percentile, for 1..30 degrees of freedom (a 95 % two-sided interval).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959964


def t_quantile(df: float) -> float:
    """The 97.5th percentile of Student's t with `df` degrees of freedom (fractional for Welch's
    test: between two tabled values, the larger one, so the interval is never too narrow)."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[math.floor(df) - 1]
    z = _Z975  # Cornish-Fisher: within 0.001 of the exact value from 30 degrees of freedom on
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Band:
    """A statistic's mean over replicates, round by round, with its 95 % confidence band (None
    where fewer than two replicates have the round)."""

    rounds: list[int]
    mean: list[float | None]
    low: list[float | None]
    high: list[float | None]


def _interval(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean of `values` and the half-width of its 95 % confidence interval."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def band(replicates: Sequence[dict[int, float]]) -> Band:
    """The band of a cell from its replicates' values by round (a round a replicate has not
    reached, or where its statistic is missing, is left out)."""
    rounds = sorted({r for values in replicates for r in values})
    mean: list[float | None] = []
    low: list[float | None] = []
    high: list[float | None] = []
    for r in rounds:
        at = [values[r] for values in replicates if r in values]
        m, half = _interval(at)
        mean.append(m)
        low.append(None if half is None else m - half)
        high.append(None if half is None else m + half)
    return Band(rounds, mean, low, high)


@dataclass(frozen=True)
class Effect:
    """How a factor's level moves a final value from the reference level's (its first): the
    difference of their means and its 95 % confidence interval (Welch's, unequal variances)."""

    level: str
    runs: int
    mean: float
    difference: float | None  # None for the reference level itself
    low: float | None
    high: float | None


def effect(level: str, values: Sequence[float], reference: Sequence[float]) -> Effect:
    """`values` (runs at `level`) against `reference` (runs at the reference level)."""
    mean = statistics.fmean(values)
    if values is reference:
        return Effect(level, len(values), mean, None, None, None)
    difference = mean - statistics.fmean(reference)
    if len(values) < 2 or len(reference) < 2:
        return Effect(level, len(values), mean, difference, None, None)
    a = statistics.variance(values) / len(values)
    b = statistics.variance(reference) / len(reference)
    if a + b == 0:  # every run gave the same value: the difference is exact
        return Effect(level, len(values), mean, difference, difference, difference)
    df = (a + b) ** 2 / (a**2 / (len(values) - 1) + b**2 / (len(reference) - 1))
    half = t_quantile(df) * math.sqrt(a + b)
    return Effect(level, len(values), mean, difference, difference - half, difference + half)
