"""indexes for the agents page: filters ordered by agent id, failed actions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 02:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = sa.text("error IS NOT NULL")


def upgrade() -> None:
    for column in ("kind", "host"):
        op.drop_index(f"ix_agents_run_{column}", table_name="agents")
        op.create_index(f"ix_agents_run_{column}", "agents", ["run_id", column, "agent_id"])
    op.create_index(
        "ix_actions_failed",
        "actions",
        ["run_id", "round", "agent_id"],
        postgresql_where=FAILED,
        sqlite_where=FAILED,
    )


def downgrade() -> None:
    op.drop_index("ix_actions_failed", table_name="actions")
    for column in ("kind", "host"):
        op.drop_index(f"ix_agents_run_{column}", table_name="agents")
        op.create_index(f"ix_agents_run_{column}", "agents", ["run_id", column])
