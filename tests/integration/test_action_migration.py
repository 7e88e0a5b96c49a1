"""Migration 0008 moves a run's actions, stored a row per agent and round before it, into chunks:
every action read back from the chunks equals its old row, field by field; and going back down
gives the same rows again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from agents.spec import RunSpec
from backend.store import actions, runs
from backend.store.db import alembic_config, create_engine, migrate, session_factory
from tests.conftest import spec_data
from tests.integration.migrating import database_at

OLD = sa.table(
    "actions",
    sa.column("run_id", sa.BigInteger),
    sa.column("round", sa.Integer),
    sa.column("agent_id", sa.BigInteger),
    sa.column("value", sa.Float),
    sa.column("payload", sa.JSON(none_as_null=True)),
    sa.column("error", sa.Text),
    sa.column("tokens", sa.Integer),
)


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request, tmp_path) -> Iterator[str]:
    """An empty database, migrated to 0007 (before the chunks)."""
    with database_at(request.param, tmp_path, "0007", "myriad_migration_test") as url:
        yield url


def old_rows(run_id: int, ids: list[int], rounds: int) -> list[dict[str, Any]]:
    """Action rows as the recorder wrote them before chunks: numbers, other payloads (a mapping,
    a list, text, true), failures without a number, tokens spent."""
    rows = []
    for round in range(1, rounds + 1):
        for agent in ids:
            row: dict[str, Any] = {
                "run_id": run_id,
                "round": round,
                "agent_id": agent,
                "value": agent * 0.5 + round,
                "payload": None,
                "error": None,
                "tokens": 0,
            }
            if agent % 7 == 3:
                row |= {"value": None, "payload": {"act": "share", "text": f"news {agent}", "of": round}}
            elif agent % 11 == 4:
                row |= {"value": None, "payload": [agent, "x", None]}
            elif agent % 13 == 5:
                row |= {"value": None, "payload": "plain text"}
            elif agent % 17 == 6:
                row |= {"value": None, "payload": True}
            if (agent + round) % 9 == 0:
                row |= {"value": None, "payload": None, "error": f"agent {agent} timed out"}
            if agent % 5 == 1:
                row["tokens"] = 100 + agent
            rows.append(row)
    return rows


async def _fill(url: str) -> tuple[list[int], list[dict[str, Any]]]:
    """Two runs recorded the old way: every agent of one, a sample of the other's."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    made, rows = [], []
    try:
        for total, recorded in ((60, None), (80, [3, 5, 17, 18, 19, 33, 34, 61, 79])):
            async with sessions() as session:
                spec = RunSpec.parse(spec_data(**{"population.total": total}))
                run = await runs.create_run(session, spec=spec)
                mine = old_rows(run.id, recorded or list(range(total)), 3)
                await session.execute(sa.insert(OLD), mine)
                await session.commit()
            made.append(run.id)
            rows += mine
    finally:
        await engine.dispose()
    return made, rows


def _plain(row: dict[str, Any]) -> tuple:
    return tuple(row[c] for c in ("run_id", "round", "agent_id", "value", "payload", "error", "tokens"))


async def _from_chunks(url: str, run_ids: list[int]) -> tuple[list[tuple], list[tuple], int]:
    """Every action as read from the chunks (in order), the same one agent at a time, and the count."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            read, by_agent, count = [], [], 0
            for run_id in run_ids:
                async for chunk, errors in actions.chunks(session, run_id=run_id):
                    read += [_plain({"run_id": run_id, **r}) for r in actions.rows_of(chunk, errors)]
                for agent in range(80):
                    for a in await actions.agent_actions(session, run_id=run_id, agent_id=agent, rounds=3):
                        by_agent.append((run_id, a.round, a.agent_id, a.value, a.payload, a.error, a.tokens))
                count += await actions.count_actions(session, run_id=run_id)
            return read, by_agent, count
    finally:
        await engine.dispose()


async def _old_table(url: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = sa.select(OLD).order_by(OLD.c.run_id, OLD.c.round, OLD.c.agent_id)
            return [tuple(r) for r in await conn.execute(query)]
    finally:
        await engine.dispose()


def test_the_migration_carries_every_action_over_row_by_row(old_database, monkeypatch):
    monkeypatch.setattr(actions, "CHUNK", 16)  # several chunks a round, and one part-full
    run_ids, rows = asyncio.run(_fill(old_database))
    expected = sorted(_plain(r) for r in rows)
    assert len(expected) == 3 * 60 + 3 * 9
    migrate(old_database)
    read, by_agent, count = asyncio.run(_from_chunks(old_database, run_ids))
    assert count == len(expected)
    for got, want in zip(read, expected, strict=True):  # row by row, every field
        assert got == want
    assert sorted(by_agent) == expected
    # A sampled run's chunks list their agents; a run's every agent makes chunks of id ranges.
    assert any(a.agent_id == 61 for a in asyncio.run(_one(old_database, run_ids[1], 61)))
    assert asyncio.run(_one(old_database, run_ids[1], 60)) == []

    command.downgrade(alembic_config(old_database), "0007")
    assert asyncio.run(_old_table(old_database)) == expected


async def _one(url: str, run_id: int, agent: int) -> list[actions.RecordedAction]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            return await actions.agent_actions(session, run_id=run_id, agent_id=agent, rounds=3)
    finally:
        await engine.dispose()
