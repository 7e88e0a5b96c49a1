"""What is stored of a run's agents: where they are hosted, and the backgrounds a model wrote.

Profiles are not stored: any process rebuilds them from the run's spec and seed
(`agents.population`), as the hosts do, so a million agents cost a row per host here, not a
million rows. A run with personas stores what the model wrote, a row per agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from agents.placement import Slot
from backend.store.models import AgentHostRow, BackgroundRow
from backend.store.records import copy_rows

__all__ = [
    "HostRange",
    "backgrounds",
    "count_backgrounds",
    "hosts",
    "place",
    "save_backgrounds",
]


class HostRange(NamedTuple):
    """A host of a run and the agents it holds (a range of ids), on its node."""

    host: int
    ids: range
    node: str | None


async def place(
    session: AsyncSession, *, run_id: int, slots: Sequence[Slot], nodes: Mapping[int, str | None]
) -> None:
    """Record where each agent is hosted now (when the run is placed, and placed anew)."""
    await session.execute(delete(AgentHostRow).where(AgentHostRow.run_id == run_id))
    if slots:
        rows = [
            {
                "run_id": run_id,
                "host": s.index,
                "first_id": s.ids.start,
                "end_id": s.ids.stop,
                "node": nodes.get(s.index),
            }
            for s in slots
        ]
        await session.execute(insert(AgentHostRow), rows)


async def hosts(session: AsyncSession, *, run_id: int) -> list[HostRange]:
    """The run's hosts in order (none before the run is placed)."""
    query = (
        select(AgentHostRow.host, AgentHostRow.first_id, AgentHostRow.end_id, AgentHostRow.node)
        .where(AgentHostRow.run_id == run_id)
        .order_by(AgentHostRow.host)
    )
    return [
        HostRange(host, range(first, end), node) for host, first, end, node in await session.execute(query)
    ]


async def save_backgrounds(
    connection: AsyncConnection, *, run_id: int, start: int, written: Sequence[str]
) -> None:
    """Store backgrounds written for agents `start`, `start + 1`, ..."""
    rows = ((run_id, start + i, text) for i, text in enumerate(written))
    await copy_rows(connection, "backgrounds", ("run_id", "agent_id", "background"), rows)


async def count_backgrounds(session: AsyncSession, *, run_id: int) -> int:
    query = select(func.count()).select_from(BackgroundRow).where(BackgroundRow.run_id == run_id)
    return (await session.execute(query)).scalar_one()


async def backgrounds(session: AsyncSession, *, run_id: int, ids: Sequence[int]) -> dict[int, str]:
    """The written backgrounds of agents `ids` (a range, or a page's few), by agent: those that
    have one."""
    chosen = (
        [BackgroundRow.agent_id >= ids.start, BackgroundRow.agent_id < ids.stop]
        if isinstance(ids, range)
        else [BackgroundRow.agent_id.in_(ids)]
    )
    query = select(BackgroundRow.agent_id, BackgroundRow.background).where(
        BackgroundRow.run_id == run_id, *chosen
    )
    return {row.agent_id: row.background for row in await session.execute(query)}
