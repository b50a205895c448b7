"""``/v1/targets``: list and register targets, import OFA tables, build and see latency models, queue measurements."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from api.deps import Context, CurrentUser, Page
from api.errors import ERROR_RESPONSES, invalid
from api.routes.params import IdempotencyKey, ResourceId
from api.routes.responses import accepted
from api.schemas.base import Page as PageOut
from api.schemas.jobs import JobOut
from api.schemas.targets import LatencyModelOut, TableImport, TargetCreate, TargetOut, TaskCreate, TaskOut
from api.services import agents, jobs, targets
from predictors.latency import MeasureSettings
from store.models import LatencyTable, Target
from workers.kinds.latency import LatencyModelRequest, most_trusted

MODEL_JOB_KIND = "build_latency_model"

TaskStatus = Literal["QUEUED", "CLAIMED", "DONE", "FAILED"]

router = APIRouter(prefix="/v1/targets", tags=["targets"], responses=ERROR_RESPONSES)


def target_out(row: Target) -> TargetOut:
    """The API form of a target row."""
    return TargetOut(name=row.name, device=row.device, runtime=row.runtime, settings=row.settings,
                     description=row.description, shared=row.user_id is None, created_at=row.created_at)  # fmt: skip


def _model_out(name: str, row: LatencyTable, used: bool = False) -> LatencyModelOut:
    return LatencyModelOut(id=row.id, target=name, space=row.space, kind=row.kind, quality=row.quality,
                           created_at=row.created_at, used_by_searches=used)  # fmt: skip


@router.get("")
def list_targets(ctx: Context, user: CurrentUser, page: Page) -> PageOut[TargetOut]:
    """Your targets and the shared built-in ones, newest first."""
    rows, token = targets.list_visible(ctx, user, page.page_size, page.page_token)
    return PageOut[TargetOut](items=[target_out(r) for r in rows], next_page_token=token)


@router.post("", status_code=201)
def create_target(body: TargetCreate, ctx: Context, user: CurrentUser) -> TargetOut:
    """Register a target of yours (e.g. a board measured by ``hwnas agent``)."""
    spec = body.model_dump(exclude={"description"})
    return target_out(targets.register(ctx, user, spec, body.description))


@router.get("/{name}")
def get_target(name: str, ctx: Context, user: CurrentUser) -> TargetOut:
    """One target."""
    return target_out(targets.user_target(ctx, user, name))


@router.post("/{name}/tables", status_code=201)
def import_tables(name: str, body: TableImport, ctx: Context, user: CurrentUser) -> LatencyModelOut:
    """Import OFA-format lookup tables (one YAML per resolution) as the target's latency model."""
    return _model_out(name, targets.import_ofa_tables(ctx, user, name, body.space, body.tables))


@router.get("/{name}/models")
def latency_models(name: str, ctx: Context, user: CurrentUser) -> list[LatencyModelOut]:
    """The target's latency models (tables, learned predictors) and their quality on held-out measurements.

    ``used_by_searches`` marks the model a search on each space uses: learned, else a measured table, else an
    imported one, the newest of its kind.
    """
    rows = targets.latency_models(ctx, user, name)
    used = {most_trusted([r for r in rows if r.space == space]) for space in {r.space for r in rows}}
    return [_model_out(name, r, r in used) for r in rows]


@router.post("/{name}/models", status_code=202, responses={202: {"description": "queued; Location: the job"}})
def build_models(
    name: str,
    body: LatencyModelRequest,
    response: Response,
    ctx: Context,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Queue a ``build_latency_model`` job: the target's lookup table and learned predictor, measured on its device.

    A remote target's models are measured by its agents (``hwnas agent``; several boards share the
    work); the job's events show the progress, its result the models' quality.
    """
    targets.user_target(ctx, user, name)
    params = body.model_dump(mode="json") | {"target": name}
    job, created = jobs.submit(ctx, user, MODEL_JOB_KIND, params, idempotency_key)
    accepted(response, f"/v1/jobs/{job.id}", created)
    return JobOut.of(job)


@router.post("/{name}/tasks", status_code=201)
def create_task(name: str, body: TaskCreate, ctx: Context, user: CurrentUser) -> TaskOut:
    """Queue the measurement of an ONNX model on the target; an agent of the target picks it up."""
    try:
        settings = MeasureSettings.from_dict(body.settings)
    except (ValueError, TypeError) as error:
        raise invalid("settings", str(error)) from None
    task = agents.create_task(ctx, user, name, agents.decode_model(body.model_base64), settings, space=body.space,
                              arch=body.arch)  # fmt: skip
    return targets.describe_task(ctx, task, None)


@router.get("/{name}/tasks")
def list_tasks(
    name: str,
    ctx: Context,
    user: CurrentUser,
    page: Page,
    status: Annotated[TaskStatus | None, Query(description="only tasks in this status")] = None,
) -> PageOut[TaskOut]:
    """Your measurement tasks on the target, newest first (``status=QUEUED``: those waiting for an agent)."""
    items, token = targets.list_tasks(ctx, user, name, status, page.page_size, page.page_token)
    return PageOut[TaskOut](items=items, next_page_token=token)


@router.get("/{name}/tasks/{task_id}")
def get_task(name: str, task_id: ResourceId, ctx: Context, user: CurrentUser) -> TaskOut:
    """A measurement task of the target: its status and, when done, the measurement."""
    return targets.user_task(ctx, user, name, task_id)
