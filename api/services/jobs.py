"""Jobs for the API: submit through the queue, look up a user's job, stream its events as SSE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from api.deps import ServiceContext
from api.errors import not_found
from store.models import Job, User
from store.queue import JobNotFoundError

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
    try:
        job = ctx.queue.get(job_id)
    except JobNotFoundError:
        raise not_found("job", job_id) from None
    if job.user_id != user.id:
        raise not_found("job", job_id)
    return job


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
