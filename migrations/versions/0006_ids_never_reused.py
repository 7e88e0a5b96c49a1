"""ids of runs, events and commands are never given again on SQLite (AUTOINCREMENT)

Without AUTOINCREMENT, SQLite gives a new row the largest id + 1: after deleting the newest run
its id went to the next one, and its bookmarks and `run-N-*` exports became ambiguous. SQLite
cannot add AUTOINCREMENT to a table, so each table is copied into a new one that has it (the
rows keep their ids). Postgres' sequences never go back: nothing to do there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("runs", "events", "commands")


def _copy_tables(autoincrement: bool) -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        return
    # Dropping `runs` with foreign keys on would delete every run's rows in the other tables
    # (ON DELETE CASCADE). Alembic's connection has them off, as SQLite does by default.
    if connection.execute(sa.text("PRAGMA foreign_keys")).scalar():
        raise RuntimeError("migrate SQLite with PRAGMA foreign_keys=OFF")
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _copy_tables(autoincrement=True)


def downgrade() -> None:
    _copy_tables(autoincrement=False)
