"""Job workers report their Ray cluster's capacity, so that the API refuses training requests no cluster can place.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 17:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the cluster_reports table."""
    op.create_table(
        "cluster_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("cpus", sa.Double(), nullable=False),
        sa.Column("gpus", sa.Double(), nullable=False),
        sa.Column("node_cpus", sa.Double(), nullable=False),
        sa.Column("node_gpus", sa.Double(), nullable=False),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_reports")),
        sa.UniqueConstraint("worker_id", name=op.f("uq_cluster_reports_worker_id")),
    )
    with op.batch_alter_table("cluster_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cluster_reports_reported_at"), ["reported_at"], unique=False)


def downgrade() -> None:
    """Drop the cluster_reports table."""
    with op.batch_alter_table("cluster_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cluster_reports_reported_at"))
    op.drop_table("cluster_reports")
