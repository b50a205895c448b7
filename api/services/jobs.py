"""Jobs for the API: submit through the queue, list and look up a user's jobs, stream a job's events as SSE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select

from api.context import ServiceContext
from api.errors import invalid
from api.services.ownership import owned
from api.services.pages import paginate
from store.models import Job, JobStatus, User
from workers.kinds import JOB_KINDS

KEEPALIVE_S = 15.0


def submit(ctx: ServiceContext, user: User, kind: str, params: dict[str, Any], key: str | None) -> tuple[Job, bool]:
    """Queue a job of `user` (idempotent with `key`); returns it and whether it was created.

    Raises:
        store.queue.IdempotencyConflictError: `key` was used for another request (a 409).
    """
    return ctx.queue.submit(kind, params, user_id=user.id, idempotency_key=key, max_attempts=ctx.settings.max_attempts)


def user_job(ctx: ServiceContext, user: User, job_id: int) -> Job:
    """The user's job.

    Raises:
        ApiError: 404 when there is no such job or it is another user's.
    """
    with ctx.db.reader() as s:
        return owned(s, Job, job_id, user)


def list_jobs(
    ctx: ServiceContext, user: User, size: int, token: str | None, kind: str | None, status: JobStatus | None
) -> tuple[Sequence[Job], str | None]:
    """One page of the user's jobs, newest first, only those of `kind` and/or `status` when given; and the next token.

    Raises:
        ApiError: 422 naming ``kind`` when it is not a registered job kind.
    """
    if kind is not None and kind not in JOB_KINDS.names():
        raise invalid("kind", f"unknown job kind {kind!r}; registered: {', '.join(JOB_KINDS.names())}")
    query = select(Job).where(Job.user_id == user.id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None:
        query = query.where(Job.status == status)
    with ctx.db.reader() as s:
        return paginate(s, query, Job.id, size, token)


def sse(seq: int, event: str, data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"id: {seq}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_stream(ctx: ServiceContext, job_id: int, after: int, *, follow: bool = True) -> Iterator[str]:
    """The job's events after `after` as SSE; with `follow`, waits for more until the job ends.

    Each event's ``id`` is its sequence number, so a client resumes with ``Last-Event-ID``.
    A comment line is sent every `KEEPALIVE_S` seconds of silence.
    """
    quiet_since = time.monotonic()
    yield f"retry: {int(ctx.sse_poll_s * 2000)}\n\n"
    while True:
        events = ctx.queue.events(job_id, after=after)
        for event in events:
            after = event.seq
            data = {**event.data, "attempt": event.attempt, "at": event.created_at.isoformat()}
            yield sse(event.seq, event.type, data)
        if events:
            quiet_since = time.monotonic()
            continue
        job = ctx.queue.get(job_id)
        if not follow or (job.status.terminal and job.event_seq <= after):
            return
        if time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        time.sleep(ctx.sse_poll_s)
