"""Hardware targets, their latency models and measurements, and the remote agents that measure them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, utcnow

_SHARED = text("user_id IS NULL")


class Target(Base):
    """A device + runtime, e.g. ``cpu-ort``; Ray nodes that host it advertise ``target:<name>``.

    Names are per user: a user's target is unique among theirs, a shared one (no owner, the
    built-ins) among the shared ones, so another user's private names never collide with yours.
    """

    __tablename__ = "targets"
    __table_args__ = (
        UniqueConstraint("user_id", "name"),
        Index("uq_targets_shared_name", "name", unique=True, sqlite_where=_SHARED, postgresql_where=_SHARED),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device: Mapped[str] = mapped_column(String(120), default="")
    runtime: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LatencyTable(Base):
    """A latency model of a target for a space: a lookup table, a learned predictor or an imported table."""

    __tablename__ = "latency_tables"

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    space: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(32), doc="lut, learned or imported")
    artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id", ondelete="SET NULL"))
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="e.g. RMSE and rank correlation on held-out")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LatencyMeasurement(Base):
    """One measured end-to-end latency of a subnet on a target."""

    __tablename__ = "latency_measurements"

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    space: Mapped[str] = mapped_column(String(120))
    arch_key: Mapped[str] = mapped_column(String(64), index=True)
    arch: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    std_ms: Mapped[float | None] = mapped_column(Float)
    repeats: Mapped[int] = mapped_column(default=1)
    source: Mapped[str] = mapped_column(String(200), default="", doc="Ray node id or agent name")
    measured_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Agent(Base):
    """A device agent (``hwnas agent``) outside the cluster that measures for some targets."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    targets: Mapped[list[str]] = mapped_column(JSON, default=list)
    environment: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, doc="the device's facts at its last registration (predictors.latency.measure.environment)"
    )
    last_seen_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AgentTask(Base):
    """A measurement task for an agent: an ONNX artefact to time on a target; `result` holds the figures."""

    __tablename__ = "agent_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="QUEUED", doc="QUEUED, CLAIMED, DONE or FAILED")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id", ondelete="SET NULL"))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    lease_expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
