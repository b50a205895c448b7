"""``/v1/targets``: list and register targets, import OFA tables, see latency models, queue measurements."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import Context, CurrentUser, Page
from api.errors import ERROR_RESPONSES, invalid, not_found
from api.routes.params import ResourceId
from api.schemas.common import Page as PageOut
from api.schemas.targets import LatencyModelOut, TableImport, TargetCreate, TargetOut, TaskCreate, TaskOut
from api.services import agents, targets
from api.services.pages import paginate
from predictors.latency import MeasureSettings
from predictors.latency import targets as builtin
from store.models import AgentTask, Artifact, LatencyTable, Target
from store.target_rows import row_spec

router = APIRouter(prefix="/v1/targets", tags=["targets"], responses=ERROR_RESPONSES)


def target_out(row: Target) -> TargetOut:
    """The API form of a target row."""
    return TargetOut(name=row.name, device=row.device, runtime=row.runtime, settings=row.settings,
                     description=row.description, shared=row.user_id is None, created_at=row.created_at)  # fmt: skip


def task_out(task: AgentTask, target: Target, artifact: Artifact | None, agent_id: int | None) -> TaskOut:
    """The API form of a measurement task."""
    return TaskOut(
        id=task.id, target=target.name, status=task.status, settings=task.payload["settings"],
        target_spec=row_spec(target).to_dict(),
        model_url=f"/v1/agents/{agent_id}/tasks/{task.id}/model" if agent_id is not None else "",
        model_sha256=artifact.sha256 if artifact is not None else None, lease_expires_at=task.lease_expires_at,
        result=task.result,
    )  # fmt: skip


@router.get("")
def list_targets(ctx: Context, user: CurrentUser, page: Page) -> PageOut[TargetOut]:
    """Your targets and the shared built-in ones, newest first."""
    with ctx.db.session() as s:
        for name in builtin.list_targets():  # make sure the built-in ones have rows
            targets.get_target(s, user, name)
    with ctx.db.reader() as s:
        rows, token = paginate(s, select(Target).where(targets.visible(user)), Target.id, page.page_size,
                               page.page_token)  # fmt: skip
        return PageOut[TargetOut](items=[target_out(r) for r in rows], next_page_token=token)


@router.post("", status_code=201)
def create_target(body: TargetCreate, ctx: Context, user: CurrentUser) -> TargetOut:
    """Register a target of yours (e.g. a board measured by ``hwnas agent``)."""
    spec = body.model_dump(exclude={"description"})
    with ctx.db.session() as s:
        return target_out(targets.register(s, user, spec, body.description))


@router.get("/{name}")
def get_target(name: str, ctx: Context, user: CurrentUser) -> TargetOut:
    """One target."""
    with ctx.db.session() as s:
        return target_out(targets.get_target(s, user, name))


@router.post("/{name}/tables", status_code=201)
def import_tables(name: str, body: TableImport, ctx: Context, user: CurrentUser) -> LatencyModelOut:
    """Import OFA-format lookup tables (one YAML per resolution) as the target's latency model."""
    with ctx.db.session() as s:
        target = targets.get_target(s, user, name)
    if target.user_id is None and not user.is_admin:
        raise invalid("name", f"target {name!r} is shared; only an admin can give it a latency model")
    table_id = targets.import_ofa_tables(ctx, user, target, body.space, body.tables)
    with ctx.db.reader() as s:
        row = s.get(LatencyTable, table_id)
        assert row is not None
        return LatencyModelOut(id=row.id, target=name, space=row.space, kind=row.kind, quality=row.quality,
                               created_at=row.created_at)  # fmt: skip


@router.get("/{name}/models")
def latency_models(name: str, ctx: Context, user: CurrentUser) -> list[LatencyModelOut]:
    """The target's latency models (tables, learned predictors) and their quality on held-out measurements."""
    with ctx.db.session() as s:
        target = targets.get_target(s, user, name)
        rows = s.scalars(select(LatencyTable).where(LatencyTable.target_id == target.id).order_by(LatencyTable.id))
        return [
            LatencyModelOut(
                id=r.id, target=name, space=r.space, kind=r.kind, quality=r.quality, created_at=r.created_at
            )
            for r in rows
        ]


@router.post("/{name}/tasks", status_code=201)
def create_task(name: str, body: TaskCreate, ctx: Context, user: CurrentUser) -> TaskOut:
    """Queue the measurement of an ONNX model on the target; an agent of the target picks it up."""
    try:
        settings = MeasureSettings.from_dict(body.settings)
    except (ValueError, TypeError) as error:
        raise invalid("settings", str(error)) from None
    task = agents.create_task(ctx, user, name, agents.decode_model(body.model_base64), settings, space=body.space,
                              arch=body.arch)  # fmt: skip
    with ctx.db.reader() as s:
        target = s.get(Target, task.target_id)
        assert target is not None
        return task_out(task, target, s.get(Artifact, task.artifact_id), None)


@router.get("/{name}/tasks/{task_id}")
def get_task(name: str, task_id: ResourceId, ctx: Context, user: CurrentUser) -> TaskOut:
    """A measurement task of the target: its status and, when done, the measurement."""
    with ctx.db.session() as s:
        target = targets.get_target(s, user, name)
        task = s.get(AgentTask, task_id)
        if task is None or task.target_id != target.id or task.payload.get("user_id") != user.id:
            raise not_found("task", task_id)
        return task_out(task, target, s.get(Artifact, task.artifact_id) if task.artifact_id else None, task.agent_id)
