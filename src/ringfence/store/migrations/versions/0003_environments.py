"""environments, and each session's environment and interruption

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ringfence.store.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", ringfence.store.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", ringfence.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_environments_account_id")),
    )
    op.create_index(op.f("ix_environments_account_id"), "environments", ["account_id"], unique=False)
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("environment_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("interrupted_at", ringfence.store.base.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("interrupted_at")
        batch.drop_column("environment_id")
    op.drop_index(op.f("ix_environments_account_id"), table_name="environments")
    op.drop_table("environments")
