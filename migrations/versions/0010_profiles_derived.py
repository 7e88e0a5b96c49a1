"""agents' profiles no longer stored, a row per agent: where they are hosted (agent_hosts, a row
per host) and the backgrounds a model wrote for them (backgrounds, runs with personas) are kept,
and the agents table dropped

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 08:30:00

A profile follows from the run's spec and seed (`agents.population`), as the hosts build it: a
million agents were a million rows, written with every run, for what any process can rebuild.
The downgrade writes them again from the same code.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
RunId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CHUNK = 10_000

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
    for run_id, spec in bind.execute(sa.select(_runs.c.id, _runs.c.spec)).all():
        if (spec.get("population") or {}).get("persona") is not None:
            written = sa.select(a.run_id, a.agent_id, a.background).where(a.run_id == run_id)
            bind.execute(_backgrounds.insert().from_select(["run_id", "agent_id", "background"], written))
    for column in ("kind", "host", "name"):
        op.drop_index(f"ix_agents_run_{column}", table_name="agents")
    if bind.dialect.name == "postgresql":
        op.drop_index("ix_agents_attributes", table_name="agents")
    op.drop_table("agents")


def downgrade() -> None:
    from agents.population import Population  # the code that builds the profiles now
    from agents.spec import RunSpec

    op.create_table(
        "agents",
        sa.Column("run_id", RunId, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("agent_id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("attributes", Json, nullable=False),
        sa.Column("background", sa.Text, nullable=False),
        sa.Column("host", sa.Integer, nullable=True),
        sa.Column("node", sa.String(64), nullable=True),
    )
    bind = op.get_bind()
    for run_id, spec in bind.execute(sa.select(_runs.c.id, _runs.c.spec)).all():
        hosts = bind.execute(
            sa.select(_hosts.c.host, _hosts.c.first_id, _hosts.c.end_id, _hosts.c.node).where(
                _hosts.c.run_id == run_id
            )
        ).all()
        if not hosts:
            continue  # never placed: its profiles were not stored then either
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
