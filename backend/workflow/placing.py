"""Placing a run's hosts: anew, again where they were after a host crash, or on the nodes left
after a node's loss; and giving new hosts the backgrounds written before."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from agents.host import HostStats
from agents.placement import Slot, alive_nodes
from agents.simulation import Simulation
from backend.store import agents as stored
from backend.workflow.publishing import Publisher

__all__ = ["dead_nodes", "place", "restore_personas"]

_BACKGROUND_CHUNK = 10_000  # backgrounds read and sent to a host at a time, after a takeover


async def place(
    sim: Simulation, publisher: Publisher, *, exclude: Sequence[str] = (), keep: Sequence[Slot] | None = None
) -> list[HostStats]:
    """Start `sim`'s hosts where `keep` says, or by the nodes' free CPUs (but on `exclude`)."""
    busy = await publisher.busy_nodes() if keep is None else None
    return await sim.start(exclude=exclude, busy=busy, slots=keep)


def dead_nodes(lost: Sequence[Slot]) -> list[str]:
    """The nodes of `lost` hosts that are gone too (a host can die alone on a live node)."""
    alive = {node.node_id for node in alive_nodes()}
    return sorted({slot.node_id for slot in lost} - alive)


async def restore_personas(sim: Simulation, publisher: Publisher, total: int) -> bool:
    """Give new hosts the backgrounds written before, if every one is stored."""

    async def restore(session: AsyncSession) -> bool:
        run_id = publisher.run_id
        if await stored.count_backgrounds(session, run_id=run_id) != total:
            return False
        for slot in sim.slots:
            for start in range(slot.ids.start, slot.ids.stop, _BACKGROUND_CHUNK):
                ids = range(start, min(start + _BACKGROUND_CHUNK, slot.ids.stop))
                written = await stored.backgrounds(session, run_id=run_id, ids=ids)
                await sim.set_backgrounds(start, [written[i] for i in ids])
        return True

    return await publisher.store(restore)
