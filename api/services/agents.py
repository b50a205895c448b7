"""Remote device agents and their measurement tasks, handed out with leases.

A task is QUEUED, then CLAIMED by one agent until its lease expires; an expired CLAIMED task is
claimable again (by any agent of the target), so a vanished agent delays a task by one lease.
Only the agent that holds a task may post its result (DONE, or FAILED with the agent's message).
An agent sees the tasks of its user's own targets; the shared built-in targets' tasks go to
admins' agents only (other users' models must not travel to a user's device).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from api.context import ServiceContext
from api.errors import ApiError, invalid, not_found
from api.services import targets
from predictors.latency.measure import Measurement, MeasureSettings, validate_latency
from store.artifacts import register_artifact
from store.db import retrying
from store.models import Agent, AgentTask, Artifact, LatencyMeasurement, Target, User

QUEUED, CLAIMED, DONE, FAILED = "QUEUED", "CLAIMED", "DONE", "FAILED"
_LATENCIES = ("median_ms", "p90_ms", "p95_ms", "mean_ms")


def register_agent(
    ctx: ServiceContext, user: User, name: str, target_names: list[str], environment: dict[str, Any]
) -> Agent:
    """Add or refresh the user's agent `name` for `target_names`; their own targets record `environment`.

    Raises:
        ApiError: 404 naming ``targets`` for an unknown target.
    """
    with ctx.db.session() as s:
        rows = [targets.get_target(s, user, t, "targets") for t in target_names]
        for row in rows:
            if row.user_id == user.id:
                row.settings = {**row.settings, "environment": environment}
        agent = s.scalars(select(Agent).where(Agent.user_id == user.id, Agent.name == name)).first()
        if agent is None:
            agent = Agent(user_id=user.id, name=name)
            s.add(agent)
        agent.targets = list(target_names)
        agent.last_seen_at = ctx.clock()
        s.flush()
        return agent


def user_agent(session: Session, user: User, agent_id: int) -> Agent:
    """The user's agent.

    Raises:
        ApiError: 404 when unknown or another user's.
    """
    agent = session.get(Agent, agent_id)
    if agent is None or agent.user_id != user.id:
        raise not_found("agent", agent_id)
    return agent


def create_task(
    ctx: ServiceContext,
    user: User,
    target_name: str,
    onnx: bytes,
    settings: MeasureSettings | None = None,
    *,
    space: str | None = None,
    arch: dict[str, Any] | None = None,
    job_id: int | None = None,
) -> AgentTask:
    """Queue the measurement of an ONNX model on a target.

    With `space` and `arch`, the result is also recorded as a `LatencyMeasurement` of that subnet.

    Raises:
        ApiError: 404 for an unknown target; 422 for an arch that is not in the space.
    """
    arch_key = None
    if arch is not None or space is not None:
        if arch is None or space is None:
            raise invalid("arch" if arch is None else "space", "space and arch go together")
        from nas.spaces import get_space

        try:
            space_obj = get_space(space)
        except KeyError as error:
            raise invalid("space", str(error.args[0])) from None
        try:
            arch = dict(space_obj.canonical(arch))
        except (ValueError, KeyError, TypeError) as error:
            raise invalid("arch", str(error)) from None
        arch_key = space_obj.key(arch)
    with ctx.db.session() as s:
        target = targets.get_target(s, user, target_name, "target")
        stored = ctx.store.put(f"agent_tasks/{target.name}/{uuid.uuid4().hex}.onnx", onnx)
        artifact = register_artifact(s, stored, kind="onnx", job_id=job_id, user_id=user.id)
        payload = {
            "settings": (settings or MeasureSettings()).to_dict(),
            "space": space,
            "arch": arch,
            "arch_key": arch_key,
            "user_id": user.id,
        }
        task = AgentTask(target_id=target.id, job_id=job_id, payload=payload, artifact_id=artifact.id, status=QUEUED)
        s.add(task)
        s.flush()
        return task


def _claimable(now: dt.datetime) -> Any:
    return or_(AgentTask.status == QUEUED, and_(AgentTask.status == CLAIMED, AgentTask.lease_expires_at < now))


def claim(ctx: ServiceContext, user: User, agent_id: int, target_name: str, lease_s: float) -> AgentTask | None:
    """Lease the oldest claimable task of the target to the agent; None when there is none.

    Raises:
        ApiError: 404 for an unknown agent or target; 422 when the agent was not registered for the target.
    """

    def run() -> AgentTask | None:
        with ctx.db.session() as s:
            now = ctx.clock()
            agent = user_agent(s, user, agent_id)
            target = targets.get_target(s, user, target_name, "target")
            if target.name not in agent.targets:
                raise invalid("target", f"agent {agent.name!r} is registered for {agent.targets}, not {target.name!r}")
            agent.last_seen_at = now
            if target.user_id is None and not user.is_admin:
                return None
            query = select(AgentTask.id).where(AgentTask.target_id == target.id, _claimable(now))
            query = query.order_by(AgentTask.id).limit(1)
            if ctx.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            task_id = s.scalars(query).first()
            if task_id is None:
                return None
            taken = s.execute(
                update(AgentTask)
                .where(AgentTask.id == task_id, _claimable(now))
                .values(status=CLAIMED, agent_id=agent.id, lease_expires_at=now + dt.timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False)
            )
            if not taken.rowcount:  # type: ignore[attr-defined]
                return None
            task = s.get(AgentTask, task_id)
            assert task is not None
            s.refresh(task)
            return task

    return retrying(run)


def held_task(session: Session, user: User, agent_id: int, task_id: int) -> tuple[Agent, AgentTask]:
    """The agent and the task it holds.

    Raises:
        ApiError: 404 for an unknown agent or task (or one of another user); 409 when the agent does not hold it.
    """
    agent = user_agent(session, user, agent_id)
    task = session.get(AgentTask, task_id)
    target = session.get(Target, task.target_id) if task is not None else None
    if task is None or target is None or (target.user_id is not None and target.user_id != user.id):
        raise not_found("task", task_id)
    if task.status != CLAIMED or task.agent_id != agent.id:
        holder = "another agent" if task.status == CLAIMED else f"nobody (it is {task.status})"
        raise ApiError(409, "not_held", f"task {task_id} is held by {holder}, not by agent {agent.id}")
    return agent, task


def task_model(ctx: ServiceContext, user: User, agent_id: int, task_id: int) -> Artifact:
    """The ONNX artefact of a task the agent holds (errors as `held_task`)."""
    with ctx.db.reader() as s:
        _, task = held_task(s, user, agent_id, task_id)
        artifact = s.get(Artifact, task.artifact_id) if task.artifact_id is not None else None
    if artifact is None:
        raise not_found("model of task", task_id)
    return artifact


def check_measurement(data: dict[str, Any]) -> Measurement:
    """A posted measurement, validated.

    Raises:
        ApiError: 422 naming the field (non-finite, zero or negative latencies; unknown or missing fields).
    """
    for name in _LATENCIES:
        if name not in data:
            raise invalid(f"measurement.{name}", "missing")
        try:
            validate_latency(data[name], name)
        except ValueError as error:
            raise invalid(f"measurement.{name}", str(error)) from None
    try:
        return Measurement.from_dict(data)
    except (ValueError, TypeError) as error:
        raise invalid("measurement", str(error)) from None


def finish(
    ctx: ServiceContext, user: User, agent_id: int, task_id: int, measurement: Measurement | None, error: str | None
) -> AgentTask:
    """Record the held task's outcome: DONE with the measurement (and its `LatencyMeasurement`), or FAILED.

    Raises:
        ApiError: as `held_task`.
    """
    with ctx.db.session() as s:
        agent, task = held_task(s, user, agent_id, task_id)
        now = ctx.clock()
        task.finished_at, task.lease_expires_at = now, None
        agent.last_seen_at = now
        if measurement is None:
            task.status, task.result = FAILED, {"error": error or "the agent reported a failure", "agent": agent.name}
            return task
        task.status, task.result = DONE, {**measurement.to_dict(), "agent": agent.name}
        payload = task.payload
        if payload.get("arch") is not None:
            row = LatencyMeasurement(
                target_id=task.target_id, space=payload["space"], arch_key=payload["arch_key"], arch=payload["arch"],
                latency_ms=measurement.median_ms, std_ms=measurement.cv * measurement.mean_ms,
                repeats=measurement.runs, source=f"agent:{agent.name}", measured_at=now,
            )  # fmt: skip
            s.add(row)
        s.flush()
        return task


def decode_model(text: str) -> bytes:
    """The bytes of a base64-encoded model.

    Raises:
        ApiError: 422 naming ``model_base64`` when it is not base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise invalid("model_base64", "not valid base64") from None
