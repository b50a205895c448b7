"""``/v1/jobs``: your jobs (filtered by kind and status), a job's state and its event stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from api.deps import Context, CurrentUser, Page
from api.errors import ERROR_RESPONSES
from api.routes.params import ResourceId
from api.schemas.base import MAX_ID
from api.schemas.base import Page as PageOut
from api.schemas.jobs import JobOut
from api.services import jobs
from store.models import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

SSE_EXAMPLE = 'id: 3\nevent: progress\ndata: {"epoch":1,"epochs":10,"loss":1.9,"attempt":1,"at":"..."}\n\n'


@router.get("")
def list_jobs(
    ctx: Context,
    user: CurrentUser,
    page: Page,
    kind: Annotated[str | None, Query(max_length=64, description="only jobs of this kind, e.g. search")] = None,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
) -> PageOut[JobOut]:
    """Your jobs, newest first, optionally only those of one kind and/or status."""
    rows, token = jobs.list_jobs(ctx, user, page.page_size, page.page_token, kind, status)
    return PageOut[JobOut](items=[JobOut.of(r) for r in rows], next_page_token=token)


@router.get("/{job_id}")
def get_job(job_id: ResourceId, ctx: Context, user: CurrentUser) -> JobOut:
    """A job: status, progress, result or error."""
    return JobOut.of(jobs.user_job(ctx, user, job_id))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"example": SSE_EXAMPLE}}}},
)
def job_events(
    job_id: ResourceId,
    ctx: Context,
    user: CurrentUser,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID, description="resume after this event id")] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="start after this event id (Last-Event-ID wins)")] = 0,
    follow: Annotated[bool, Query(description="keep the stream open until the job ends")] = True,
) -> StreamingResponse:
    """The job's events as server-sent events (``status``, ``progress``, ``log``); each ``id`` is the event's number.

    The stream ends when the job has ended and every event was sent; reconnect with
    ``Last-Event-ID`` to resume without repeats.
    """
    jobs.user_job(ctx, user, job_id)
    start = last_event_id if last_event_id is not None else after
    return StreamingResponse(
        jobs.event_stream(ctx, job_id, start, follow=follow),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
