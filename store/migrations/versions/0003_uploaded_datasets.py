"""Uploaded datasets, and the supernets trained on them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 07:27:10.747556
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the datasets table and supernets.dataset_id."""
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("upload_sha256", sa.String(length=64), nullable=False),
        sa.Column("upload_size", sa.BigInteger(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_datasets_artifact_id_artifacts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_datasets_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("supernets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dataset_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_supernets_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_supernets_dataset_id_datasets"), "datasets", ["dataset_id"], ["id"], ondelete="RESTRICT"
        )


def downgrade() -> None:
    """Drop supernets.dataset_id and the datasets table."""
    with op.batch_alter_table("supernets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_supernets_dataset_id_datasets"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_supernets_dataset_id"))
        batch_op.drop_column("dataset_id")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_user_id"))
    op.drop_table("datasets")
