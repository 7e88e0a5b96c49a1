"""experiments (runs linked to an experiment and a cell of it) and surveys with their answers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:45:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
NOW = sa.text("(CURRENT_TIMESTAMP)")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("spec", Json, nullable=False),
        sa.Column("max_parallel", sa.Integer, nullable=False),
        sa.Column("paused", sa.Boolean, server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sqlite_autoincrement=True,
    )
    # SQLite cannot add a foreign key to a table: the runs table is copied into one that has it
    # (keeping AUTOINCREMENT, 0006), with foreign keys off, or dropping `runs` would cascade.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite and op.get_bind().execute(sa.text("PRAGMA foreign_keys")).scalar():
        raise RuntimeError("migrate SQLite with PRAGMA foreign_keys=OFF")
    with op.batch_alter_table("runs", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("experiment_id", Id, nullable=True))
        batch.add_column(sa.Column("cell", sa.Integer, nullable=True))
        batch.add_column(sa.Column("replicate", sa.Integer, nullable=True))
        batch.create_foreign_key(
            "runs_experiment_id_fkey", "experiments", ["experiment_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index("ix_runs_experiment", "runs", ["experiment_id", "cell", "replicate"])

    op.create_table(
        "surveys",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("run_id", Id, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("spec", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agents", sa.BigInteger, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_surveys_run_id", "surveys", ["run_id", "id"])
    op.create_table(
        "survey_answers",
        sa.Column("survey_id", Id, sa.ForeignKey("surveys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("agent_id", sa.BigInteger, primary_key=True),
        sa.Column("question", sa.Integer, primary_key=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("choice", sa.String(200), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("tokens", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("survey_answers")
    op.drop_index("ix_surveys_run_id", table_name="surveys")
    op.drop_table("surveys")
    op.drop_index("ix_runs_experiment", table_name="runs")
    with op.batch_alter_table("runs", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint("runs_experiment_id_fkey", type_="foreignkey")
        batch.drop_column("replicate")
        batch.drop_column("cell")
        batch.drop_column("experiment_id")
    op.drop_table("experiments")
