"""What a Ray cluster can place: its capacity, whether a group of training workers fits, and the reports in SQL.

Job workers with a Ray executor publish their cluster's capacity (`publish`); the API reads the fresh
reports (`fresh_reports`) to refuse at submission a training that no cluster could place, and the
job checks the live cluster again before it starts its Ray Train workers: Ray itself would queue an
unplaceable request forever.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.base import utcnow
from store.models import ClusterReport
from workers.kinds.base import JobError

REPORT_INTERVAL_S = 30.0
"""How often a serving job worker publishes its cluster's capacity."""
FRESH_S = 4 * REPORT_INTERVAL_S
"""A report older than this is ignored (its worker may have stopped)."""


@dataclass(frozen=True)
class Capacity:
    """A Ray cluster's resources (alive nodes only).

    Attributes:
        cpus: CPUs of all nodes together.
        gpus: GPUs of all nodes together.
        node_cpus: the most CPUs one node has.
        node_gpus: the most GPUs one node has.
        nodes: alive nodes.
    """

    cpus: float
    gpus: float
    node_cpus: float
    node_gpus: float
    nodes: int

    @classmethod
    def of_ray(cls) -> Capacity:
        """The capacity of the Ray cluster this process is connected to (``ray.init`` must have run)."""
        import ray

        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
        cpus = [float(r.get("CPU", 0.0)) for r in nodes]
        gpus = [float(r.get("GPU", 0.0)) for r in nodes]
        return cls(sum(cpus), sum(gpus), max(cpus, default=0.0), max(gpus, default=0.0), len(nodes))

    @classmethod
    def of_report(cls, row: ClusterReport) -> Capacity:
        """The capacity a stored report names."""
        return cls(row.cpus, row.gpus, row.node_cpus, row.node_gpus, row.nodes)

    def describe(self) -> str:
        """``2 CPU(s), 0 GPU(s) on 1 node(s), the largest with 2 CPU(s) and 0 GPU(s)``."""
        return (
            f"{_n(self.cpus)} CPU(s), {_n(self.gpus)} GPU(s) on {self.nodes} node(s), "
            f"the largest with {_n(self.node_cpus)} CPU(s) and {_n(self.node_gpus)} GPU(s)"
        )


def _n(value: float) -> str:
    return f"{value:g}"


def unplaceable(workers: int, cpus_per_worker: float, gpus_per_worker: int, capacity: Capacity) -> JobError | None:
    """Why `workers` workers of `cpus_per_worker` CPUs and `gpus_per_worker` GPUs cannot all run on `capacity`.

    Returns:
        None if they fit (the totals and the largest node suffice); otherwise a `JobError` with code
        ``no_gpu`` (GPUs asked, the cluster has none) or ``insufficient_resources``, naming what
        was asked and what the cluster has.
    """
    has = f"the Ray cluster has {capacity.describe()}"
    if gpus_per_worker and capacity.gpus == 0:
        return JobError("no_gpu", f"device=cuda asks for {workers} GPU worker(s), but {has}: "
                                  "train with device=cpu, or add a node with a GPU")  # fmt: skip
    gpus = f" and {gpus_per_worker} GPU(s)" if gpus_per_worker else ""
    asked = f"workers={workers} with {_n(cpus_per_worker)} CPU(s){gpus} each"
    if cpus_per_worker > capacity.node_cpus or gpus_per_worker > capacity.node_gpus:
        return JobError("insufficient_resources", f"{asked}: no node is that large ({has})")
    if workers * cpus_per_worker > capacity.cpus or workers * gpus_per_worker > capacity.gpus:
        total = f"{_n(workers * cpus_per_worker)} CPU(s)" + (f" and {workers * gpus_per_worker} GPU(s)" if gpus else "")
        return JobError("insufficient_resources", f"{asked} needs {total} in all, but {has}: "
                                                  "ask for fewer workers or fewer CPUs per worker")  # fmt: skip
    return None


def publish(session: Session, worker_id: str, capacity: Capacity) -> None:
    """Store (or refresh) `worker_id`'s report of its cluster's capacity, stamped now."""
    row = session.scalars(select(ClusterReport).where(ClusterReport.worker_id == worker_id)).one_or_none()
    values: dict[str, Any] = {
        "cpus": capacity.cpus, "gpus": capacity.gpus, "node_cpus": capacity.node_cpus,
        "node_gpus": capacity.node_gpus, "nodes": capacity.nodes, "reported_at": utcnow(),
    }  # fmt: skip
    if row is None:
        session.add(ClusterReport(worker_id=worker_id, **values))
    else:
        for name, value in values.items():
            setattr(row, name, value)


def fresh_reports(session: Session, max_age_s: float = FRESH_S) -> list[ClusterReport]:
    """The reports published in the last `max_age_s` seconds, newest first."""
    since = utcnow() - dt.timedelta(seconds=max_age_s)
    query = select(ClusterReport).where(ClusterReport.reported_at >= since).order_by(ClusterReport.reported_at.desc())
    return list(session.scalars(query))
