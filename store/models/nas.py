"""The science's results: supernets, searches and the subnets they found."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, utcnow


class Supernet(Base):
    """A trained (or training) supernet; `checkpoint` maps file names to artefact ids."""

    __tablename__ = "supernets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    space: Mapped[str] = mapped_column(String(120))
    dataset: Mapped[str] = mapped_column(String(120), doc="a registered dataset's name, or dataset:<id> for an upload")
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="RESTRICT"), index=True, doc="the uploaded dataset it was trained on"
    )
    strategy: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    checkpoint: Mapped[dict[str, int] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Search(Base):
    """A search over a supernet for objectives under constraints on targets."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    supernet_id: Mapped[int] = mapped_column(ForeignKey("supernets.id", ondelete="CASCADE"), index=True)
    objectives: Mapped[list[str]] = mapped_column(JSON)
    directions: Mapped[dict[str, str]] = mapped_column(JSON)
    constraints: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)
    algorithm: Mapped[str] = mapped_column(String(64))
    budget: Mapped[int]
    hypervolume: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Subnet(Base):
    """A subnet of a supernet: from a search's front (`search_id`), exported alone, or fine-tuned (`parent_id`)."""

    __tablename__ = "subnets"
    __table_args__ = (UniqueConstraint("supernet_id", "search_id", "arch_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    supernet_id: Mapped[int] = mapped_column(ForeignKey("supernets.id", ondelete="CASCADE"), index=True)
    search_id: Mapped[int | None] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True)
    arch_key: Mapped[str] = mapped_column(String(64), doc="nas.space.SearchSpace.key of the arch")
    arch: Mapped[dict[str, Any]] = mapped_column(JSON)
    predicted: Mapped[dict[str, float] | None] = mapped_column(JSON, doc="objective -> predicted value")
    validated: Mapped[dict[str, float] | None] = mapped_column(JSON, doc="objective -> measured value")
    pareto_rank: Mapped[int | None]
    bundle_artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id", ondelete="SET NULL"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("subnets.id", ondelete="SET NULL"), index=True, doc="the subnet this one was fine-tuned from"
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
