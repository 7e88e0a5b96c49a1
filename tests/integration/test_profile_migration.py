"""Migration 0010 stops storing a row per agent: every agent read back after it (its profile
rebuilt from the spec, its host and node, the background a model wrote) equals its old row, field
by field; a run whose rows today's code does not rebuild keeps them; and going back down gives
the same rows again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from agents.population import Population
from agents.spec import RunSpec
from backend.services.roster import Roster
from backend.store import agents as stored_agents
from backend.store import runs
from backend.store.db import alembic_config, create_engine, migrate, session_factory
from tests.conftest import spec_data, stub_model
from tests.integration.migrating import database_at

OLD = sa.table(
    "agents",
    sa.column("run_id", sa.BigInteger),
    sa.column("agent_id", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
    sa.column("attributes", sa.JSON),
    sa.column("background", sa.Text),
    sa.column("host", sa.Integer),
    sa.column("node", sa.String),
)
HOSTS = [(0, range(0, 40), "node-a"), (1, range(40, 90), "node-b")]


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request, tmp_path) -> Iterator[str]:
    """An empty database, migrated to 0008 (profiles stored a row per agent)."""
    with database_at(request.param, tmp_path, "0008", "myriad_profile_migration_test") as url:
        yield url


def specs() -> list[RunSpec]:
    """A run of rule-based agents, one whose backgrounds a model wrote (personas), and one
    recorded by older code (its names drawn otherwise)."""
    persona = {
        "llm": {"models": {"stub": stub_model("http://127.0.0.1:9")}},
        "population.persona": {"model": "stub"},
        "population.kinds": [{"kind": "llm_guess", "share": 100, "params": {"model": "stub"}}],
    }
    return [
        RunSpec.parse(spec_data(**{"population.total": 90})),
        RunSpec.parse(spec_data(**{"population.total": 90, **persona})),
        RunSpec.parse(spec_data(**{"population.total": 90, "seed": 8})),
    ]


def old_rows(run_id: int, spec: RunSpec, persona: bool, older: bool = False) -> list[dict[str, Any]]:
    """The agents' rows as the recorder wrote them before 0010 (`older`: with other names)."""
    rows = []
    for profile in Population(spec.population, spec.seed).profiles(range(90)):
        host, _, node = next(h for h in HOSTS if profile.id in h[1])
        background = f"Written for {profile.name}, {profile.id}." if persona else profile.background
        rows.append(
            {
                "run_id": run_id,
                "agent_id": profile.id,
                "name": f"Agent {profile.id}" if older else profile.name,
                "kind": profile.kind,
                "attributes": dict(profile.attributes),
                "background": background,
                "host": host,
                "node": node,
            }
        )
    return rows


async def _fill(url: str) -> tuple[list[int], list[dict[str, Any]]]:
    engine = create_engine(url)
    made, rows = [], []
    try:
        async with session_factory(engine)() as session:
            for n, spec in enumerate(specs()):
                run = await runs.create_run(session, spec=spec)
                await session.flush()
                # Made from the spec as stored, as the recorder made them (JSONB sorted its keys).
                stored = await _stored_spec(session, run.id)
                mine = old_rows(run.id, stored, spec.population.persona is not None, older=n == 2)
                await session.execute(sa.insert(OLD), mine)
                made.append(run.id)
                rows += mine
            await session.commit()
    finally:
        await engine.dispose()
    return made, rows


async def _read(url: str, run_ids: list[int]) -> list[dict[str, Any]]:
    """Every agent of the runs as the pages read them now."""
    engine = create_engine(url)
    read = []
    try:
        async with session_factory(engine)() as session:
            for run_id in run_ids[:2]:
                spec = await _stored_spec(session, run_id)
                hosts = await stored_agents.hosts(session, run_id=run_id)
                written = await stored_agents.backgrounds(session, run_id=run_id, ids=range(90))
                assert bool(written) == (spec.population.persona is not None)
                for agent in Roster(spec).views(range(90), hosts, written):
                    read.append(
                        {
                            "run_id": run_id,
                            "agent_id": agent.agent_id,
                            "name": agent.name,
                            "kind": agent.kind,
                            "attributes": dict(agent.attributes),
                            "background": agent.background,
                            "host": agent.host,
                            "node": agent.node,
                        }
                    )
    finally:
        await engine.dispose()
    return read


async def _stored_spec(session: Any, run_id: int) -> RunSpec:
    spec = sa.table("runs", sa.column("id", sa.BigInteger), sa.column("spec", sa.JSON))
    query = sa.select(spec.c.spec).where(spec.c.id == run_id)
    return RunSpec.stored((await session.execute(query)).scalar_one())


async def _old_table(url: str, name: str = "agents") -> list[dict[str, Any]]:
    engine = create_engine(url)
    table = sa.table(name, *(sa.column(c.name, c.type) for c in OLD.c))
    try:
        async with engine.connect() as conn:
            query = sa.select(table).order_by(table.c.run_id, table.c.agent_id)
            return [dict(r._mapping) for r in await conn.execute(query)]
    finally:
        await engine.dispose()


def test_the_migration_keeps_every_agent_row_by_row(old_database):
    run_ids, rows = asyncio.run(_fill(old_database))
    assert len(rows) == 270
    migrate(old_database)
    read = asyncio.run(_read(old_database, run_ids))
    for got, want in zip(read, rows[:180], strict=True):  # row by row, every field
        assert got == want
    # The run recorded by older code keeps its rows, not rebuilt others.
    assert asyncio.run(_old_table(old_database, "legacy_agents")) == rows[180:]

    command.downgrade(alembic_config(old_database), "0008")
    assert asyncio.run(_old_table(old_database)) == rows
