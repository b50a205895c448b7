"""The measurement tasks of device agents (``hwnas agent``), queued and leased on the SQL store.

A task is QUEUED, then CLAIMED by one agent until its lease expires (`store.leases`); an expired
CLAIMED task is claimable again by any agent of its target, so a vanished agent delays it by one
lease. Only the agent that holds a task records its outcome: DONE with the measurement (and, for a
subnet of a space, a `LatencyMeasurement`), or FAILED with the agent's message. Every function
works inside the caller's write transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from predictors.latency.measure import Measurement, MeasureSettings
from store.leases import LeasedTable
from store.models import Agent, AgentTask, LatencyMeasurement

QUEUED, CLAIMED, DONE, FAILED = "QUEUED", "CLAIMED", "DONE", "FAILED"
TASKS = LeasedTable(
    AgentTask, AgentTask.id, AgentTask.status, AgentTask.lease_expires_at, waiting=QUEUED, leased=CLAIMED
)


def add_task(
    session: Session,
    target_id: int,
    artifact_id: int,
    settings: MeasureSettings,
    *,
    user_id: int | None,
    space: str | None = None,
    arch: dict[str, Any] | None = None,
    arch_key: str | None = None,
    job_id: int | None = None,
    key: str | None = None,
) -> AgentTask:
    """Queue the measurement of the ONNX artefact `artifact_id` on a target.

    Args:
        session: a write transaction.
        target_id: the target's row.
        artifact_id: the model to measure.
        settings: how to measure it.
        user_id: who asked (None for a job without an owner: no user sees the task).
        space: with `arch` and `arch_key`: the subnet the model is, recorded as a `LatencyMeasurement` once measured.
        arch: the subnet's architecture (canonical).
        arch_key: the subnet's key in the space.
        job_id: the job that asked, if any.
        key: the task's name within its job (`job_tasks` finds it again when the job is run again).
    """
    payload = {"settings": settings.to_dict(), "space": space, "arch": arch, "arch_key": arch_key, "user_id": user_id}
    if key is not None:
        payload["key"] = key
    task = AgentTask(target_id=target_id, job_id=job_id, payload=payload, artifact_id=artifact_id, status=QUEUED)
    session.add(task)
    session.flush()
    return task


def job_tasks(session: Session, job_id: int, keys: Sequence[str]) -> dict[str, AgentTask]:
    """The tasks that job `job_id` queued under `keys` (see `add_task`), by key."""
    key = AgentTask.payload["key"].as_string()
    rows = session.scalars(select(AgentTask).where(AgentTask.job_id == job_id, key.in_(list(keys))))
    return {row.payload["key"]: row for row in rows}


def fail_waiting(session: Session, job_id: int, reason: str, now: dt.datetime) -> int:
    """Mark the job's tasks that no agent has finished FAILED with `reason` (the job gave up on them); how many."""
    rows = session.scalars(
        select(AgentTask).where(AgentTask.job_id == job_id, AgentTask.status.in_([QUEUED, CLAIMED]))
    ).all()
    for row in rows:
        row.status, row.result, row.finished_at, row.lease_expires_at = FAILED, {"error": reason}, now, None
    session.flush()
    return len(rows)


def claim_task(session: Session, target_id: int, agent_id: int, now: dt.datetime, lease_s: float) -> AgentTask | None:
    """Lease the target's oldest claimable task to the agent for `lease_s` seconds; None when there is none."""
    claimed = TASKS.claim(
        session, now, lease_s, where=[AgentTask.target_id == target_id], order_by=[AgentTask.id],
        values={"agent_id": agent_id},
    )  # fmt: skip
    if claimed is None:
        return None
    task = session.get(AgentTask, claimed[0][0])
    assert task is not None
    session.refresh(task)
    return task


def holds(task: AgentTask, agent_id: int) -> bool:
    """Whether the agent holds the task (it claimed it and nobody has claimed it since)."""
    return task.status == CLAIMED and task.agent_id == agent_id


def finish_task(
    session: Session,
    task: AgentTask,
    agent: Agent,
    now: dt.datetime,
    measurement: Measurement | None,
    error: str | None,
) -> None:
    """Record the outcome of a task `agent` holds: DONE with `measurement`, or FAILED with `error`."""
    task.finished_at, task.lease_expires_at = now, None
    if measurement is None:
        task.status, task.result = FAILED, {"error": error or "the agent reported a failure", "agent": agent.name}
        return
    task.status, task.result = DONE, {**measurement.to_dict(), "agent": agent.name}
    payload = task.payload
    if payload.get("arch") is not None:
        row = LatencyMeasurement(
            target_id=task.target_id, space=payload["space"], arch_key=payload["arch_key"], arch=payload["arch"],
            latency_ms=measurement.median_ms, std_ms=measurement.cv * measurement.mean_ms,
            repeats=measurement.runs, source=f"agent:{agent.name}", measured_at=now,
        )  # fmt: skip
        session.add(row)
    session.flush()
