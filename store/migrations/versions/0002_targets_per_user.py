"""Target names per user: unique among a user's targets and among the shared ones, not across users.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 06:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARED = sa.text("user_id IS NULL")


def upgrade() -> None:
    """Replace the global unique name by (owner, name) and a partial unique index on shared names."""
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_targets_name"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_targets_user_id_name"), ["user_id", "name"])
        batch_op.create_index(
            "uq_targets_shared_name", ["name"], unique=True, sqlite_where=SHARED, postgresql_where=SHARED
        )


def downgrade() -> None:
    """Names unique across users again (fails if two users have a target of the same name)."""
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.drop_index("uq_targets_shared_name", sqlite_where=SHARED, postgresql_where=SHARED)
        batch_op.drop_constraint(batch_op.f("uq_targets_user_id_name"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_targets_name"), ["name"])
