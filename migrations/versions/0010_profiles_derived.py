"""agents' profiles no longer stored, a row per agent: where they are hosted (agent_hosts, a row
per host) and the backgrounds a model wrote for them (backgrounds, runs with personas) are kept,
and the agents table dropped

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 08:30:00

A profile follows from the run's spec and seed (`agents.population`), as the hosts build it: a
million agents were a million rows, written with every run, for what any process can rebuild.
Each run's stored rows are checked against what today's code rebuilds (a run recorded before
names were drawn as they are now differs): a run whose rows differ, or whose spec no longer reads
here, keeps them in `legacy_agents`, and the migration says which. The downgrade gives those rows
back and writes the others again from today's code. (Migration 0009's downgrade sorts specs'
keys again: a run made after 0009 would be rebuilt with other agents by the code before it.)
"""

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
RunId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CHUNK = 10_000
log = logging.getLogger("alembic.runtime.migration")

_agents = sa.table(
    "agents",
    sa.column("run_id", sa.BigInteger),
    sa.column("agent_id", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
    sa.column("attributes", Json),
    sa.column("background", sa.Text),
    sa.column("host", sa.Integer),
    sa.column("node", sa.String),
)
_hosts = sa.table(
    "agent_hosts",
    sa.column("run_id", sa.BigInteger),
    sa.column("host", sa.Integer),
    sa.column("first_id", sa.BigInteger),
    sa.column("end_id", sa.BigInteger),
    sa.column("node", sa.String),
)
_backgrounds = sa.table(
    "backgrounds",
    sa.column("run_id", sa.BigInteger),
    sa.column("agent_id", sa.BigInteger),
    sa.column("background", sa.Text),
)
_runs = sa.table("runs", sa.column("id", sa.BigInteger), sa.column("spec", Json))


def upgrade() -> None:
    op.create_table(
        "agent_hosts",
        sa.Column("run_id", RunId, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("host", sa.Integer, primary_key=True),
        sa.Column("first_id", sa.BigInteger, nullable=False),
        sa.Column("end_id", sa.BigInteger, nullable=False),
        sa.Column("node", sa.String(64), nullable=True),
    )
    op.create_table(
        "backgrounds",
        sa.Column("run_id", RunId, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("agent_id", sa.BigInteger, primary_key=True),
        sa.Column("background", sa.Text, nullable=False),
    )
    bind = op.get_bind()
    a = _agents.c
    placed = (
        sa.select(a.run_id, a.host, sa.func.min(a.agent_id), sa.func.max(a.agent_id) + 1, sa.func.min(a.node))
        .where(a.host.is_not(None))
        .group_by(a.run_id, a.host)
    )
    bind.execute(_hosts.insert().from_select(["run_id", "host", "first_id", "end_id", "node"], placed))
    legacy = []
    for run_id, spec in bind.execute(sa.select(_runs.c.id, _runs.c.spec)).all():
        persona = (spec.get("population") or {}).get("persona") is not None
        if persona:
            written = sa.select(a.run_id, a.agent_id, a.background).where(a.run_id == run_id)
            bind.execute(_backgrounds.insert().from_select(["run_id", "agent_id", "background"], written))
        if not _rebuilt(bind, run_id, spec, persona):
            legacy.append(run_id)
    for column in ("kind", "host", "name"):
        op.drop_index(f"ix_agents_run_{column}", table_name="agents")
    if bind.dialect.name == "postgresql":
        op.drop_index("ix_agents_attributes", table_name="agents")
    # The rows of runs that today's code rebuilds go; the others stay, in a table of their own.
    bind.execute(_agents.delete().where(a.run_id.not_in(legacy) if legacy else sa.true()))
    op.rename_table("agents", "legacy_agents")
    if legacy:
        log.warning(
            "runs %s keep their stored profiles in legacy_agents: today's code rebuilds others", legacy
        )


def _rebuilt(bind: Any, run_id: int, spec: dict[str, Any], persona: bool) -> bool:
    """Whether today's code rebuilds every stored profile of the run (its name, kind and
    attributes, and its background unless a model wrote it)."""
    from agents.population import Population
    from agents.spec import RunSpec

    a = _agents.c
    try:
        run = RunSpec.stored(spec)
    except ValueError:  # a kind not installed here, a parameter refused now
        return False
    population = Population(run.population, run.seed)
    after = -1
    while True:
        rows = bind.execute(
            sa.select(a.agent_id, a.name, a.kind, a.attributes, a.background)
            .where(a.run_id == run_id, a.agent_id > after)
            .order_by(a.agent_id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return True
        if rows[-1].agent_id >= run.population.total:
            return False
        for row, p in zip(rows, population.profiles_of(np.array([r.agent_id for r in rows])), strict=True):
            same = (row.name, row.kind, row.attributes) == (p.name, p.kind, dict(p.attributes))
            if not same or (not persona and row.background != p.background):
                return False
        after = rows[-1].agent_id


def downgrade() -> None:
    from agents.population import Population  # the code that builds the profiles now
    from agents.spec import RunSpec

    # The rows kept at the upgrade come back as they were; the others are written anew.
    op.rename_table("legacy_agents", "agents")
    bind = op.get_bind()
    legacy = {r for (r,) in bind.execute(sa.select(_agents.c.run_id).distinct())}
    for run_id, spec in bind.execute(sa.select(_runs.c.id, _runs.c.spec)).all():
        hosts = bind.execute(
            sa.select(_hosts.c.host, _hosts.c.first_id, _hosts.c.end_id, _hosts.c.node).where(
                _hosts.c.run_id == run_id
            )
        ).all()
        if not hosts or run_id in legacy:
            continue  # never placed (its profiles were not stored then either), or kept
        run = RunSpec.stored(spec)
        population = Population(run.population, run.seed)
        for host, first, end, node in hosts:
            for start in range(first, end, _CHUNK):
                ids = range(start, min(start + _CHUNK, end))
                written: dict[int, str] = dict(
                    bind.execute(
                        sa.select(_backgrounds.c.agent_id, _backgrounds.c.background).where(
                            _backgrounds.c.run_id == run_id,
                            _backgrounds.c.agent_id >= ids.start,
                            _backgrounds.c.agent_id < ids.stop,
                        )
                    ).all()
                )
                rows: list[dict[str, Any]] = [
                    {
                        "run_id": run_id,
                        "agent_id": p.id,
                        "name": p.name,
                        "kind": p.kind,
                        "attributes": dict(p.attributes),
                        "background": written.get(p.id, p.background),
                        "host": host,
                        "node": node,
                    }
                    for p in population.profiles(ids)
                ]
                bind.execute(_agents.insert(), rows)
    for column in ("kind", "host"):
        op.create_index(f"ix_agents_run_{column}", "agents", ["run_id", column, "agent_id"])
    op.create_index("ix_agents_run_name", "agents", ["run_id", "name"])
    if bind.dialect.name == "postgresql":
        op.create_index("ix_agents_attributes", "agents", ["attributes"], postgresql_using="gin")
    op.drop_table("backgrounds")
    op.drop_table("agent_hosts")
