"""``/v1/searches``: queue a search, follow it, cancel it, read its Pareto front (JSON or CSV)."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from api.context import ServiceContext
from api.deps import Context, CurrentUser, Page
from api.errors import ERROR_RESPONSES, not_found
from api.routes.params import IdempotencyKey, ResourceId
from api.routes.responses import accepted
from api.schemas.base import Page as PageOut
from api.schemas.searches import ParetoOut, ParetoPoint, SearchCreate, SearchOut
from api.services import searches
from api.services.fronts import RenderedFront
from store.models import JobStatus, Search

MEDIA = {"json": "application/json", "csv": "text/csv"}
router = APIRouter(prefix="/v1/searches", tags=["searches"], responses=ERROR_RESPONSES)


def _out(search: Search, status: JobStatus | None, empty_reason: str | None) -> SearchOut:
    return SearchOut(
        id=search.id, supernet_id=search.supernet_id, objectives=search.objectives, directions=search.directions,
        constraints=search.constraints, targets=search.targets, algorithm=search.algorithm, budget=search.budget,
        hypervolume=search.hypervolume, job_id=search.job_id, status=status, empty_reason=empty_reason,
        pareto_url=f"/v1/searches/{search.id}/pareto", created_at=search.created_at,
    )  # fmt: skip


@router.post("", status_code=202, responses={202: {"description": "queued; Location: the search"}})
def post_search(
    body: SearchCreate, response: Response, ctx: Context, user: CurrentUser, idempotency_key: IdempotencyKey = None
) -> SearchOut:
    """Queue a search of one of your supernets."""
    search, job, created = searches.create_search(ctx, user, body, idempotency_key)
    accepted(response, f"/v1/searches/{search.id}", created)
    return _out(search, job.status, (job.result or {}).get("reason"))


@router.get("")
def list_searches(ctx: Context, user: CurrentUser, page: Page) -> PageOut[SearchOut]:
    """Your searches, newest first."""
    with ctx.db.reader() as s:
        rows, token = searches.list_searches(s, user, page.page_size, page.page_token)
        return PageOut[SearchOut](items=[_out(*row) for row in rows], next_page_token=token)


@router.get("/{search_id}")
def get_search(search_id: ResourceId, ctx: Context, user: CurrentUser) -> SearchOut:
    """One search and its job's status."""
    with ctx.db.reader() as s:
        return _out(*searches.user_search(s, user, search_id))


@router.post("/{search_id}/cancel", status_code=202)
def cancel_search(search_id: ResourceId, ctx: Context, user: CurrentUser) -> SearchOut:
    """Ask the search to stop (a queued one is cancelled at once, a running one at its next check)."""
    with ctx.db.reader() as s:
        search, _, empty_reason = searches.user_search(s, user, search_id)
    status = ctx.queue.cancel(search.job_id, user_id=user.id) if search.job_id is not None else None
    return _out(search, status, empty_reason)


@router.get(
    "/{search_id}/pareto",
    responses={200: {"content": {"text/csv": {"example": "subnet_id,arch_key,pareto_rank,predicted.accuracy,...\n"}}}},
)
async def pareto(
    search_id: ResourceId,
    ctx: Context,
    user: CurrentUser,
    format: Annotated[Literal["json", "csv"], Query(description="json or csv")] = "json",
) -> ParetoOut:
    """The search's Pareto front: each point's subnet id, arch, predicted and validated objective values.

    An ended search with an empty front says why in ``empty_reason`` (e.g. the constraint no subnet met).
    """
    front = await ctx.fronts.get_or_render(
        search_id, format, lambda: run_in_threadpool(_render_front, ctx, search_id, format)
    )
    if front.user_id != user.id:
        raise not_found("search", search_id)
    return Response(front.body, media_type=MEDIA[format])  # type: ignore[return-value]


def _render_front(ctx: ServiceContext, search_id: int, fmt: str) -> RenderedFront:
    """The front rendered as JSON or CSV, with its owner; kept in `ctx.fronts` when the search has ended.

    Rendered without an owner check, so that one rendering serves every concurrent request; the
    route answers 404 to anyone but the owner.
    """
    with ctx.db.reader() as s:
        search, status, empty_reason = searches.search_state(s, search_id)
        rows, drift = searches.front_rows(s, search)
        points = [
            ParetoPoint(subnet_id=r.id, arch_key=r.arch_key, arch=r.arch, predicted=r.predicted,
                        validated=r.validated, pareto_rank=r.pareto_rank)
            for r in rows
        ]  # fmt: skip
    front = ParetoOut(
        search_id=search.id, status=status, objectives=search.objectives, directions=search.directions, points=points,
        empty_reason=empty_reason, measurement_drift=drift or None,
    )  # fmt: skip
    rendered = RenderedFront(search.user_id, _csv(front).encode() if fmt == "csv" else front.model_dump_json().encode())
    if status is not None and status.terminal:
        ctx.fronts.put(search_id, fmt, rendered)
    return rendered


def _csv(front: ParetoOut) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = [f"{kind}.{o}" for kind in ("predicted", "validated") for o in front.objectives]
    writer.writerow(["subnet_id", "arch_key", "pareto_rank", *columns, "arch"])
    for p in front.points:
        values = [(getattr(p, kind) or {}).get(o, "") for kind in ("predicted", "validated") for o in front.objectives]
        writer.writerow([p.subnet_id, p.arch_key, p.pareto_rank, *values, json.dumps(p.arch, separators=(",", ":"))])
    return out.getvalue()
