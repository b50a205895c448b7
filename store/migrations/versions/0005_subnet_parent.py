"""A fine-tuned subnet records the subnet it was fine-tuned from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add subnets.parent_id (null for the subnets made before: none was fine-tuned)."""
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_subnets_parent_id"), ["parent_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_subnets_parent_id_subnets"), "subnets", ["parent_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    """Drop subnets.parent_id."""
    with op.batch_alter_table("subnets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_subnets_parent_id_subnets"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_subnets_parent_id"))
        batch_op.drop_column("parent_id")
