"""an organization's GitHub App

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ringfence.store.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "github_apps",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("api_url", sa.String(length=500), nullable=False),
        sa.Column("git_host", sa.String(length=255), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", ringfence.store.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_github_apps")),
    )


def downgrade() -> None:
    op.drop_table("github_apps")
