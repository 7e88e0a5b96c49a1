"""What a run produces: agents' profiles, rounds, actions, events and checkpoints (the actions'
chunks are written and read by `backend.store.actions`; its readers are named here too).

Large writes go through `copy_rows`: COPY on Postgres (asyncpg's binary protocol), one prepared
`executemany` on SQLite. Callers pass rows as tuples in column order; JSON values as JSON text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import defer

from agents.core import sum_usage
from agents.scenarios import RoundResult
from backend.domain import EventKind
from backend.store.actions import agent_actions, count_actions, group_stats
from backend.store.models import CheckpointRow, EventRow, RoundRow, RoundStats, Run

__all__ = [
    "HISTORY_EVENTS",
    "SPENDING_EVENTS",
    "add_event",
    "agent_actions",
    "copy_rows",
    "count_actions",
    "events_after",
    "group_stats",
    "latest_checkpoint",
    "list_events",
    "list_rounds",
    "plain_stats",
    "save_checkpoint",
    "save_round",
]


async def copy_rows(
    connection: AsyncConnection, table: str, columns: Sequence[str], rows: Iterable[tuple]
) -> None:
    """Bulk-insert `rows` into `table` within the connection's transaction."""
    raw = (await connection.get_raw_connection()).driver_connection
    if raw is None:
        raise RuntimeError("the database connection was invalidated")
    if connection.dialect.name == "postgresql":
        await raw.copy_records_to_table(table, records=rows, columns=list(columns))
    else:
        marks = ", ".join("?" * len(columns))
        await raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def plain_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe stats: NaN and infinities (a round without valid answers) become None."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in stats.items()}


async def save_round(session: AsyncSession, *, run_id: int, result: RoundResult) -> None:
    session.add(
        RoundRow(
            run_id=run_id,
            round=result.round,
            stats=plain_stats(result.stats),
            details=result.details,
            time=result.time,
            failures=result.failures,
            usage=result.usage,
        )
    )


async def list_rounds(session: AsyncSession, *, run_id: int, details: bool = True) -> Sequence[RoundRow]:
    """The run's rounds in order; without `details` (histograms, winners) when not needed."""
    query = select(RoundRow).where(RoundRow.run_id == run_id).order_by(RoundRow.round)
    if not details:
        query = query.options(defer(RoundRow.details, raiseload=True))
    return (await session.scalars(query)).all()


async def round_stats(
    session: AsyncSession, *, run_id: int, usage: bool, every: int = 1, newest_from: int = 0
) -> list[RoundStats]:
    """The run's rounds in order, without details, and without their language-model use (left
    empty) unless `usage`: only these columns, as tuples, a fraction of the cost of loading
    hundreds of `RoundRow`s on a page polled every second. With `every`, only every `every`-th
    round and those from `newest_from` on: what a page shows of a run of thousands of rounds."""
    mine = RoundRow.run_id == run_id
    if every > 1:
        mine = and_(mine, or_(RoundRow.round % every == 0, RoundRow.round >= newest_from))
    if usage:
        query = select(RoundRow.round, RoundRow.stats, RoundRow.time, RoundRow.failures, RoundRow.usage)
        return [RoundStats(*row) for row in await session.execute(query.where(mine).order_by(RoundRow.round))]
    bare = select(RoundRow.round, RoundRow.stats, RoundRow.time, RoundRow.failures)
    rows = await session.execute(bare.where(mine).order_by(RoundRow.round))
    return [RoundStats(number, stats, time, failures, {}) for number, stats, time, failures in rows]


async def add_event(
    session: AsyncSession, *, run_id: int, round: int, kind: str, payload: dict[str, Any]
) -> int:
    """Record an event of the run; its id."""
    event = insert(EventRow).values(run_id=run_id, round=round, kind=kind, payload=payload)
    return (await session.execute(event.returning(EventRow.id))).scalar_one()


async def usage_totals(
    session: AsyncSession, *, run_id: int, upto: int | None = None
) -> dict[str, dict[str, int]]:
    """The run's language-model use so far, per model, over its stored rounds (up to round `upto`)."""
    mine = RoundRow.run_id == run_id
    if upto is not None:
        mine = and_(mine, RoundRow.round <= upto)
    return sum_usage((await session.scalars(select(RoundRow.usage).where(mine))).all())


# Language-model use outside the rounds is recorded with the event that spent it, by what spent it.
SPENDING_EVENTS = {
    EventKind.INTERVIEW: "interviews",
    EventKind.SURVEY: "surveys",
    EventKind.BACKGROUNDS_WRITTEN: "backgrounds",
    EventKind.BACKGROUNDS_CUT_SHORT: "backgrounds",
}


# What a rewind to a checkpoint keeps of the events after it: the run's history, which the rounds
# run again do not repeat. The rest (rounds, failures, the scenario's own) is recorded anew.
HISTORY_EVENTS = frozenset(
    {
        *SPENDING_EVENTS,
        *(EventKind.QUEUED, EventKind.STARTED, EventKind.PAUSED, EventKind.RESUMED, EventKind.INJECTED),
        *(EventKind.STOPPED, EventKind.COMPLETED, EventKind.FAILED),
        *(EventKind.BUDGET, EventKind.BUDGET_RAISED, EventKind.RESUME_REQUESTED, EventKind.OUTAGE),
        *(EventKind.RELEASED, EventKind.WORKER_LOST, EventKind.HOST_LOST, EventKind.NODE_LOST),
        EventKind.RECOVERED,
    }
)


async def usage_outside_rounds(session: AsyncSession, *, run_id: int) -> dict[str, dict[str, dict[str, int]]]:
    """The language-model use recorded with the run's events, by what spent it (`interviews`,
    `surveys`, `backgrounds`), per model."""
    query = select(EventRow.kind, EventRow.payload).where(
        EventRow.run_id == run_id, EventRow.kind.in_(SPENDING_EVENTS)
    )
    spent: dict[str, list[dict[str, dict[str, int]]]] = {what: [] for what in SPENDING_EVENTS.values()}
    for kind, payload in (await session.execute(query)).all():
        spent[SPENDING_EVENTS[kind]].append(payload.get("usage", {}))
    return {what: sum_usage(parts) for what, parts in spent.items()}


async def get_round(session: AsyncSession, *, run_id: int, round: int) -> RoundRow | None:
    return await session.get(RoundRow, (run_id, round))


async def list_events(session: AsyncSession, *, run_id: int, limit: int = 100) -> Sequence[EventRow]:
    """The run's newest events first."""
    query = select(EventRow).where(EventRow.run_id == run_id)
    return (await session.scalars(query.order_by(EventRow.id.desc()).limit(limit))).all()


async def events_after(
    session: AsyncSession, *, run_id: int, after: int, limit: int = 100
) -> Sequence[EventRow]:
    """The run's events after event id `after`, oldest first."""
    query = select(EventRow).where(EventRow.run_id == run_id, EventRow.id > after)
    return (await session.scalars(query.order_by(EventRow.id).limit(limit))).all()


async def save_checkpoint(session: AsyncSession, *, run_id: int, round: int, data: bytes, keep: int) -> None:
    """Store a checkpoint and drop all but the newest `keep`."""
    session.add(CheckpointRow(run_id=run_id, round=round, data=data))
    await session.flush()
    newest = (
        select(CheckpointRow.round).where(CheckpointRow.run_id == run_id).order_by(CheckpointRow.round.desc())
    )
    kept = (await session.scalars(newest.limit(keep))).all()
    await session.execute(
        delete(CheckpointRow).where(CheckpointRow.run_id == run_id, CheckpointRow.round.not_in(kept))
    )


async def latest_checkpoint(session: AsyncSession, *, run_id: int, at_most: int) -> CheckpointRow | None:
    query = (
        select(CheckpointRow)
        .where(CheckpointRow.run_id == run_id, CheckpointRow.round <= at_most)
        .order_by(CheckpointRow.round.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def stored_round(session: AsyncSession, *, run_id: int) -> int:
    """The run's last round as stored (0 before the first)."""
    return (await session.execute(select(Run.round).where(Run.id == run_id))).scalar_one()
