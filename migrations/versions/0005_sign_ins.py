"""dashboard sign-ins, so signing out revokes a session cookie

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_ins",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_sign_ins_created_at", "sign_ins", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sign_ins_created_at", table_name="sign_ins")
    op.drop_table("sign_ins")
