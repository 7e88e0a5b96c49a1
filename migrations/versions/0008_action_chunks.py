"""actions stored in columnar chunks (action_chunks) and their failures (action_failures), not a
row per agent and round: existing runs' actions are moved over, and the actions table dropped

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:00:00

The chunks are packed by `backend.store.actions` (the same code the recorder writes them with),
`CHUNK` consecutive recorded agents of a round at a time, as a run records them now.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from backend.store import actions

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON(none_as_null=True).with_variant(sa.dialects.postgresql.JSONB(none_as_null=True), "postgresql")
BLOBS = ("ids", "numbers", "payloads", "tokens")

_old = sa.table(
    "actions",
    sa.column("run_id", sa.BigInteger),
    sa.column("round", sa.Integer),
    sa.column("agent_id", sa.BigInteger),
    sa.column("value", sa.Float),
    sa.column("payload", Json),
    sa.column("error", sa.Text),
    sa.column("tokens", sa.Integer),
)
_chunks = sa.table(
    "action_chunks",
    *(sa.column(c, sa.LargeBinary if c in BLOBS else sa.BigInteger) for c in actions.CHUNK_COLUMNS),
)
_failures = sa.table(
    "action_failures",
    sa.column("run_id", sa.BigInteger),
    sa.column("round", sa.Integer),
    sa.column("agent_id", sa.BigInteger),
    sa.column("error", sa.Text),
)


def upgrade() -> None:
    op.create_table(
        "action_chunks",
        sa.Column("run_id", sa.BigInteger, primary_key=True),
        sa.Column("round", sa.Integer, primary_key=True),
        sa.Column("first_id", sa.BigInteger, primary_key=True),
        sa.Column("end_id", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("ids", sa.LargeBinary, nullable=True),
        sa.Column("numbers", sa.LargeBinary, nullable=False),
        sa.Column("payloads", sa.LargeBinary, nullable=True),
        sa.Column("tokens", sa.LargeBinary, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The arrays are compressed already: Postgres need not try again (TOAST's pglz costs a
        # write's time for nothing), it only stores them out of line.
        for column in BLOBS:
            op.execute(f"ALTER TABLE action_chunks ALTER COLUMN {column} SET STORAGE EXTERNAL")
    op.create_table(
        "action_failures",
        sa.Column("run_id", sa.BigInteger, primary_key=True),
        sa.Column("round", sa.Integer, primary_key=True),
        sa.Column("agent_id", sa.BigInteger, primary_key=True),
        sa.Column("error", sa.Text, nullable=False),
    )
    _to_chunks(op.get_bind())
    op.drop_index("ix_actions_failed", table_name="actions")
    op.drop_table("actions")


def _to_chunks(bind: Any) -> None:
    """Each run's rounds' action rows, `CHUNK` at a time in id order, as chunks."""
    rounds = bind.execute(sa.select(_old.c.run_id, _old.c.round).distinct().order_by("run_id", "round"))
    for run_id, number in rounds.all():
        after = -1
        while True:
            rows = bind.execute(
                sa.select(_old.c.agent_id, _old.c.value, _old.c.payload, _old.c.error, _old.c.tokens)
                .where(_old.c.run_id == run_id, _old.c.round == number, _old.c.agent_id > after)
                .order_by(_old.c.agent_id)
                .limit(actions.CHUNK)
            ).all()
            if not rows:
                break
            encoded = actions.encode_rows(run_id, number, rows)
            bind.execute(
                _chunks.insert(), [dict(zip(actions.CHUNK_COLUMNS, c, strict=True)) for c in encoded.chunks]
            )
            if encoded.failures:
                bind.execute(
                    _failures.insert(),
                    [dict(zip(actions.FAILURE_COLUMNS, f, strict=True)) for f in encoded.failures],
                )
            after = rows[-1][0]


def downgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("run_id", sa.BigInteger, primary_key=True),
        sa.Column("round", sa.Integer, primary_key=True),
        sa.Column("agent_id", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("payload", Json, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_actions_failed",
        "actions",
        ["run_id", "round", "agent_id"],
        postgresql_where=sa.text("error IS NOT NULL"),
        sqlite_where=sa.text("error IS NOT NULL"),
    )
    bind = op.get_bind()
    read = (
        _chunks.c.round,
        _chunks.c.first_id,
        _chunks.c.end_id,
        _chunks.c.ids,
        _chunks.c.numbers,
        _chunks.c.payloads,
        _chunks.c.tokens,
        _chunks.c.failures,
    )
    keys = bind.execute(sa.select(_chunks.c.run_id, _chunks.c.round, _chunks.c.first_id)).all()
    for run_id, number, first in keys:
        row = bind.execute(
            sa.select(*read).where(
                _chunks.c.run_id == run_id, _chunks.c.round == number, _chunks.c.first_id == first
            )
        ).one()
        chunk = actions.decode(row)
        errors = dict(
            bind.execute(
                sa.select(_failures.c.agent_id, _failures.c.error).where(
                    _failures.c.run_id == run_id,
                    _failures.c.round == number,
                    _failures.c.agent_id >= row[1],
                    _failures.c.agent_id < row[2],
                )
            ).all()
        )
        rows = [{"run_id": run_id, **r} for r in actions.rows_of(chunk, errors)]
        bind.execute(_old.insert(), rows)
    op.drop_table("action_failures")
    op.drop_table("action_chunks")
