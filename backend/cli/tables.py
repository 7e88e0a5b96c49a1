"""Rounds and runs laid out for the terminal."""

from __future__ import annotations

from agents.scenarios import RoundResult

__all__ = ["cells", "line"]


def line(cells: list[str]) -> str:
    return " ".join(f"{c:>7}" for c in cells)


def cells(result: RoundResult, stat_names: tuple[str, ...]) -> list[str]:
    def cell(value: float | int | None) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.2f}"

    stats = [cell(result.stats.get(name)) for name in stat_names]
    return [str(result.round), *stats, f"{result.time:.2f}s", str(result.failures)]
