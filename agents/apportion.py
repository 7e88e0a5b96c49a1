"""Exact integer shares of a total (largest-remainder rounding)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["largest_remainder"]


def largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` into integers proportional to `weights` that add up to exactly `total`.

    Each part gets the floor of its quota; the units left over go to the largest fractional parts,
    earlier weights first on ties, so the split is deterministic.

    Examples:
        >>> largest_remainder(10, [50, 30, 20])
        [5, 3, 2]
        >>> largest_remainder(7, [1, 1, 1])
        [3, 2, 2]
    """
    if total < 0:
        raise ValueError(f"cannot split a negative total ({total})")
    weight_sum = float(sum(weights))
    if weight_sum <= 0 or any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative and not all zero")
    quotas = [total * w / weight_sum for w in weights]
    parts = [int(q) for q in quotas]
    left = total - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda i: (parts[i] - quotas[i], i))
    for i in by_remainder[:left]:
        parts[i] += 1
    return parts
