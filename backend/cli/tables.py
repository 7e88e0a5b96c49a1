"""Runs and rounds laid out for the terminal, as rich tables: numbers right-aligned, columns as
wide as their widest cell (a status never runs into its neighbour)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

__all__ = ["RoundLines", "cells", "round_table", "runs_table"]


def _cell(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.2f}"


def cells(
    round: int, stats: Mapping[str, Any], stat_names: Sequence[str], time: float, failures: int
) -> list[str]:
    """One round's cells: its number, its statistics in `stat_names` order, time, failures."""
    return [str(round), *(_cell(stats.get(n)) for n in stat_names), f"{time:.2f}s", f"{failures:,}"]


def _table(**options: Any) -> Table:
    return Table(box=None, pad_edge=False, header_style="bold", **options)


def round_table(stat_names: Sequence[str], rows: Iterable[list[str]]) -> Table:
    """A run's rounds: round, statistics, time, failures; every column right-aligned."""
    table = _table()
    for name in ("round", *stat_names, "time", "failed"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


class RoundLines:
    """Rounds printed one at a time as they come (`myriad run`), aligned as one table: the
    header once, then a one-row table per round, every column of a fixed width: its name's, or
    the first round's cell with room to grow by a character."""

    def __init__(self, stat_names: Sequence[str], first: Sequence[str]) -> None:
        self.names = ("round", *stat_names, "time", "failed")
        # Two spaces between columns, inside each column's width but the first's.
        self.widths = [max(len(n), len(c) + 1) for n, c in zip(self.names, first, strict=True)]
        self.widths = [self.widths[0]] + [w + 2 for w in self.widths[1:]]

    def _table(self, header: bool) -> Table:
        table = _table(show_header=header, padding=0)
        for name, width in zip(self.names, self.widths, strict=True):
            table.add_column(name, justify="right", no_wrap=True, width=width)
        return table

    def header(self) -> Table:
        return self._table(header=True)

    def row(self, row: list[str]) -> Table:
        table = self._table(header=False)
        table.add_row(*row)
        return table


def runs_table(runs: Iterable[Any]) -> Table:
    """Runs, newest first as given: id, status, round of rounds, agents, name."""
    table = _table()
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("round", justify="right", no_wrap=True)
    table.add_column("rounds", justify="right", no_wrap=True)
    table.add_column("agents", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("name", overflow="fold")
    for r in runs:
        created = r.created_at.strftime("%Y-%m-%d %H:%M") if getattr(r, "created_at", None) else ""
        table.add_row(
            str(r.id),
            r.status,
            f"{r.round:,}",
            f"{r.rounds:,}",
            f"{r.agents:,}",
            created,
            Text(r.name),  # never markup: a run's name is the user's text
        )
    return table
