"""runs' and experiments' specs kept as written (JSON), not as JSONB, which sorts keys

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 08:55:00

The order of a spec's categories decides who its agents are (they are dealt out in that order),
and the order of an experiment's factors numbers its cells: on Postgres a run's agents differed
from the same spec's on SQLite or on the engine alone. Specs stored before keep the order JSONB
gave them, which is the order their runs were made with.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("runs", "experiments")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN spec TYPE json USING spec::json")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN spec TYPE jsonb USING spec::jsonb")
