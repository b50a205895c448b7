"""Agents keep the device facts they reported when they last registered.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 14:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add agents.environment (``{}`` for the agents registered before)."""
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("environment", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    """Drop agents.environment."""
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("environment")
