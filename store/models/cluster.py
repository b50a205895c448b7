"""The job workers' reports of their Ray cluster's capacity, which the API checks training requests against."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, utcnow


class ClusterReport(Base):
    """What a job worker's Ray cluster had when the worker last looked (one row per worker, refreshed)."""

    __tablename__ = "cluster_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(200), unique=True, doc="the reporting worker (as in job leases)")
    cpus: Mapped[float] = mapped_column(doc="CPUs of the alive nodes together")
    gpus: Mapped[float] = mapped_column(doc="GPUs of the alive nodes together")
    node_cpus: Mapped[float] = mapped_column(doc="the most CPUs one node has")
    node_gpus: Mapped[float] = mapped_column(doc="the most GPUs one node has")
    nodes: Mapped[int] = mapped_column(doc="alive nodes")
    reported_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
