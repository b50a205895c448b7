"""Targets for the API: seeding, visibility, registration, latency models, measurement tasks as the API shows them.

The built-in targets get their shared rows at start-up (`seed_builtin`); a user sees their own
targets and the shared ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.context import ServiceContext
from api.errors import ApiError, invalid, not_found
from api.schemas.targets import TaskOut
from api.services.pages import paginate
from predictors.latency import targets as builtin
from store.artifacts import register_artifact
from store.db import Database
from store.models import AgentTask, Artifact, LatencyTable, Target, User
from store.target_rows import row_spec, spec_settings, target_row

RESOLUTION = re.compile(r"[0-9]{1,4}")
"""A key of an uploaded table: a resolution in pixels, in ASCII digits."""


def seed_builtin(db: Database) -> None:
    """Give every built-in target its shared row (no owner) if it has none, so that reads never write."""
    with db.session() as s:
        for name in builtin.list_targets():
            target_row(s, name, None)


def list_visible(ctx: ServiceContext, user: User, size: int, token: str | None) -> tuple[Sequence[Target], str | None]:
    """One page of the targets `user` may use (their own and the shared ones), newest first, and the next token."""
    query = select(Target).where(or_(Target.user_id == user.id, Target.user_id.is_(None)))
    with ctx.db.reader() as s:
        return paginate(s, query, Target.id, size, token)


def get_target(session: Session, user: User, name: str, field: str | None = None) -> Target:
    """The target `name` as `user` sees it (theirs or a shared one); a built-in one gets its shared row on first use.

    Raises:
        ApiError: 404 when `user` has no target of that name and no shared one has it.
    """
    row = target_row(session, name, user.id)
    if row is None:
        raise not_found("target", name, field)
    return row


def user_target(ctx: ServiceContext, user: User, name: str) -> Target:
    """The target `name` as `user` sees it, read (errors as `get_target`)."""
    with ctx.db.reader() as s:
        return get_target(s, user, name)


def register(ctx: ServiceContext, user: User, spec: dict[str, Any], description: str) -> Target:
    """Add a target of `user` from a `predictors.latency.Target` dict.

    Raises:
        ApiError: 422 for an invalid spec, 409 for a built-in name or one of `user`'s own targets
            (names are per user: another user's target of the same name is no conflict and is not revealed).
    """
    try:
        target = builtin.Target.from_dict(spec)
    except (ValueError, TypeError) as error:
        raise invalid("name" if not spec.get("name") else "target", str(error)) from None
    if target.name in builtin.list_targets():
        raise ApiError(409, "conflict", f"target name {target.name!r} is a built-in target", "name")
    row = Target(name=target.name, user_id=user.id, device=target.device, runtime=target.runtime,
                 settings=spec_settings(target), description=description)  # fmt: skip
    try:
        with ctx.db.session() as s:
            s.add(row)
    except IntegrityError:
        raise ApiError(409, "conflict", f"you already have a target named {target.name!r}", "name") from None
    return row


def import_ofa_tables(ctx: ServiceContext, user: User, name: str, space: str, tables: dict[str, str]) -> LatencyTable:
    """Import OFA-format YAML tables (resolution -> file text) as the latency model of target `name`.

    Raises:
        ApiError: 404 for a target `user` cannot see; 422 naming ``name`` for a shared target and a
            user who is not an admin, naming the space when it is unknown, and naming ``tables`` for
            a key that is not a resolution or a text that is not a table (the message gives the
            resolution, the line and the reason; see `LookupTable.from_ofa_texts`).
    """
    from nas.spaces import get_space
    from predictors.latency import LookupTable

    target = user_target(ctx, user, name)
    if target.user_id is None and not user.is_admin:
        raise invalid("name", f"target {name!r} is shared; only an admin can give it a latency model")

    try:
        space_obj = get_space(space)
    except KeyError as error:
        raise invalid("space", str(error.args[0])) from None
    texts: dict[int, tuple[str, str]] = {}
    for resolution, text in tables.items():
        if not RESOLUTION.fullmatch(resolution):
            shown = f"{resolution[:20]!a}{'...' if len(resolution) > 20 else ''}"
            raise invalid("tables", f"key {shown} is not a resolution: keys are resolutions in pixels, e.g. '224'")
        r = int(resolution)
        if r in texts:
            raise invalid("tables", f"key {resolution!r} names resolution {r} again")
        texts[r] = (f"tables.{resolution}", text)
    try:
        table = LookupTable.from_ofa_texts(texts, space_obj)
    except ValueError as error:  # the message may quote the text; a lone surrogate cannot be sent as UTF-8
        raise invalid("tables", str(error).encode("utf-8", "backslashreplace").decode()) from None
    key = f"targets/{target.id}/tables/{space}-{ctx.clock().strftime('%Y%m%dT%H%M%S%f')}.json"
    stored = ctx.store.put(key, json.dumps(table.to_dict()).encode())
    with ctx.db.session() as s:
        artifact = register_artifact(s, stored, kind="latency_table", user_id=user.id)
        quality = {"resolutions": sorted(texts), "entries": len(table)}
        row = LatencyTable(target_id=target.id, space=space, kind="imported", artifact_id=artifact.id, quality=quality)
        s.add(row)
        s.flush()
        return row


def latency_models(ctx: ServiceContext, user: User, name: str) -> Sequence[LatencyTable]:
    """The latency models (tables, learned predictors) of target `name`, oldest first (errors as `get_target`)."""
    with ctx.db.reader() as s:
        target = get_target(s, user, name)
        query = select(LatencyTable).where(LatencyTable.target_id == target.id).order_by(LatencyTable.id)
        return s.scalars(query).all()


def task_out(task: AgentTask, target: Target, artifact: Artifact | None, agent_id: int | None) -> TaskOut:
    """The API form of a measurement task of `target`, its model `artifact`, as agent `agent_id` sees it."""
    return TaskOut(
        id=task.id, target=target.name, status=task.status, settings=task.payload["settings"],
        target_spec=row_spec(target).to_dict(),
        model_url=f"/v1/agents/{agent_id}/tasks/{task.id}/model" if agent_id is not None else "",
        model_sha256=artifact.sha256 if artifact is not None else None, lease_expires_at=task.lease_expires_at,
        result=task.result,
    )  # fmt: skip


def describe_task(ctx: ServiceContext, task: AgentTask, agent_id: int | None) -> TaskOut:
    """`task_out` of a task, its target and model read from the store."""
    with ctx.db.reader() as s:
        target = s.get(Target, task.target_id)
        assert target is not None
        artifact = s.get(Artifact, task.artifact_id) if task.artifact_id is not None else None
        return task_out(task, target, artifact, agent_id)


def list_tasks(
    ctx: ServiceContext, user: User, name: str, status: str | None, size: int, token: str | None
) -> tuple[list[TaskOut], str | None]:
    """One page of the measurement tasks `user` queued on target `name`, newest first (optionally of one status).

    Raises:
        ApiError: 404 for a target `user` cannot see.
    """
    with ctx.db.reader() as s:
        target = get_target(s, user, name)
        query = select(AgentTask).where(
            AgentTask.target_id == target.id, AgentTask.payload["user_id"].as_integer() == user.id
        )
        if status is not None:
            query = query.where(AgentTask.status == status)
        rows, next_token = paginate(s, query, AgentTask.id, size, token)
        ids = [t.artifact_id for t in rows if t.artifact_id is not None]
        artifacts = {a.id: a for a in s.scalars(select(Artifact).where(Artifact.id.in_(ids)))} if ids else {}
        tasks = [task_out(t, target, artifacts.get(t.artifact_id) if t.artifact_id else None, t.agent_id)
                 for t in rows]  # fmt: skip
    return tasks, next_token


def user_task(ctx: ServiceContext, user: User, name: str, task_id: int) -> TaskOut:
    """A measurement task `user` queued on target `name`, as the API shows it.

    Raises:
        ApiError: 404 for a target `user` cannot see, or a task that is not theirs on it.
    """
    with ctx.db.reader() as s:
        target = get_target(s, user, name)
        task = s.get(AgentTask, task_id)
        if task is None or task.target_id != target.id or task.payload.get("user_id") != user.id:
            raise not_found("task", task_id)
        artifact = s.get(Artifact, task.artifact_id) if task.artifact_id is not None else None
        return task_out(task, target, artifact, task.agent_id)
