"""Remote device agents for the API: registration, and their measurement tasks (`store.agent_tasks`).

An agent sees the tasks of its user's own targets; the shared built-in targets' tasks go to admins'
agents only (other users' models must not travel to a user's device). Only the agent that holds a
task may fetch its model and post its result.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.context import ServiceContext
from api.errors import ApiError, invalid, not_found
from api.schemas.targets import TaskOut
from api.services import targets
from api.services.ownership import owned
from api.services.pages import paginate
from predictors.latency.measure import Measurement, MeasureSettings, validate_latency
from store import agent_tasks
from store.agent_tasks import CLAIMED
from store.artifacts import register_artifact
from store.db import retrying
from store.models import Agent, AgentTask, Artifact, Target, User

_LATENCIES = ("median_ms", "p90_ms", "p95_ms", "mean_ms")


def register_agent(
    ctx: ServiceContext, user: User, name: str, target_names: list[str], environment: dict[str, Any]
) -> Agent:
    """Add or refresh the user's agent `name` for `target_names` with its device facts `environment`.

    The agent keeps the facts of its last registration; the user's own targets record them too.

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
        agent.targets, agent.environment = list(target_names), environment
        agent.last_seen_at = ctx.clock()
        s.flush()
        return agent


def list_agents(ctx: ServiceContext, user: User, size: int, token: str | None) -> tuple[Sequence[Agent], str | None]:
    """One page of the user's agents, newest first, and the next page's token."""
    with ctx.db.reader() as s:
        return paginate(s, select(Agent).where(Agent.user_id == user.id), Agent.id, size, token)


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
        return agent_tasks.add_task(
            s, target.id, artifact.id, settings or MeasureSettings(), user_id=user.id, space=space, arch=arch,
            arch_key=arch_key, job_id=job_id,
        )  # fmt: skip


def claim(ctx: ServiceContext, user: User, agent_id: int, target_name: str, lease_s: float) -> TaskOut | None:
    """Lease the oldest claimable task of the target to the agent; None when there is none.

    Raises:
        ApiError: 404 for an unknown agent (naming ``agent_id``: the agent registers again) or target; 422 when the
            agent was not registered for the target.
    """

    def run() -> AgentTask | None:
        with ctx.db.session() as s:
            now = ctx.clock()
            agent = owned(s, Agent, agent_id, user, "agent_id")
            target = targets.get_target(s, user, target_name, "target")
            if target.name not in agent.targets:
                raise invalid("target", f"agent {agent.name!r} is registered for {agent.targets}, not {target.name!r}")
            agent.last_seen_at = now
            if target.user_id is None and not user.is_admin:
                return None
            return agent_tasks.claim_task(s, target.id, agent.id, now, lease_s)

    task = retrying(run)
    return None if task is None else targets.describe_task(ctx, task, agent_id)


def held_task(session: Session, user: User, agent_id: int, task_id: int) -> tuple[Agent, AgentTask]:
    """The agent and the task it holds.

    Raises:
        ApiError: 404 for an unknown agent (naming ``agent_id``) or task (or one of another user); 409 when the agent
            does not hold it (``wrong_target`` when the task is of a target the agent is not registered for).
    """
    agent = owned(session, Agent, agent_id, user, "agent_id")
    task = session.get(AgentTask, task_id)
    target = session.get(Target, task.target_id) if task is not None else None
    if task is None or target is None or (target.user_id is not None and target.user_id != user.id):
        raise not_found("task", task_id)
    if not agent_tasks.holds(task, agent.id):
        if target.name not in agent.targets:
            raise ApiError(
                409, "wrong_target",
                f"task {task_id} is of target {target.name!r}; agent {agent.name!r} measures {agent.targets}",
            )  # fmt: skip
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
) -> TaskOut:
    """Record the held task's outcome: DONE with the measurement (and its `LatencyMeasurement`), or FAILED.

    Raises:
        ApiError: as `held_task`.
    """
    with ctx.db.session() as s:
        agent, task = held_task(s, user, agent_id, task_id)
        now = ctx.clock()
        agent.last_seen_at = now
        agent_tasks.finish_task(s, task, agent, now, measurement, error)
    return targets.describe_task(ctx, task, agent_id)


def decode_model(text: str) -> bytes:
    """The bytes of a base64-encoded model.

    Raises:
        ApiError: 422 naming ``model_base64`` when it is not base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise invalid("model_base64", "not valid base64") from None
