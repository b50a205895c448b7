"""Searches for the API: queue a request on the user's supernet and targets; read searches and their fronts.

The request's goal was validated when it was parsed (`predictors.search_spec.SearchGoal`); here
the supernet and the targets are checked against the user's rows, and the search job (kind
`SEARCH_JOB_KIND`) is queued with the spec as its parameters. Its `Search` row is created with
the job's id (`workers.kinds.search.search_row`), so the job finds it by ``Search.job_id``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.context import ServiceContext
from api.errors import not_found
from api.schemas.searches import SearchCreate
from api.services import jobs, targets
from api.services.ownership import owned
from api.services.pages import paginate
from store.models import Job, JobStatus, Search, Subnet, Supernet, User
from workers.kinds.search import SearchParams, search_row

SEARCH_JOB_KIND = "search"
EMPTY_REASON = Job.result["reason"].as_string()
"""The search job's explanation of an empty front, read in SQL (the whole result holds every member)."""
DRIFT = Job.result["drift"]
"""The search job's per-target drift of its latency measurements, read in SQL."""

SearchState = tuple[Search, JobStatus | None, str | None]
"""A search, its job's status and why its front is empty (if it is)."""


def search_params(ctx: ServiceContext, user: User, request: SearchCreate) -> SearchParams:
    """The search job's parameters: the request's spec on the user's supernet (and its space).

    Raises:
        ApiError: 404 for a supernet or target the user does not have.
    """
    with ctx.db.session() as s:
        supernet = owned(s, Supernet, request.supernet_id, user, "supernet_id")
        for name in request.targets:
            targets.get_target(s, user, name, "targets")
        space = supernet.space
    return SearchParams(space=space, **request.model_dump())


def create_search(ctx: ServiceContext, user: User, request: SearchCreate, key: str | None) -> tuple[Search, Job, bool]:
    """Queue the search job and create its row; an idempotent retry returns the original ones.

    Raises:
        ApiError: as `search_params`.
        store.queue.IdempotencyConflictError: `key` was used for another request.
    """
    params = search_params(ctx, user, request)
    job, created = jobs.submit(ctx, user, SEARCH_JOB_KIND, params.model_dump(mode="json"), key)
    try:
        with ctx.db.session() as s:
            search = search_row(s, job.id, user.id, params)
    except IntegrityError:  # a concurrent retry with the same key created it
        with ctx.db.reader() as s:
            search = s.scalars(select(Search).where(Search.job_id == job.id)).one()
    return search, job, created


def search_state(s: Session, search_id: int) -> SearchState:
    """The search with its job's status and empty reason, whoever owns it.

    Raises:
        ApiError: 404 when there is no such search.
    """
    row = s.execute(
        select(Search, Job.status, EMPTY_REASON).outerjoin(Job, Job.id == Search.job_id).where(Search.id == search_id)
    ).one_or_none()
    if row is None:
        raise not_found("search", search_id)
    return row[0], row[1], row[2]


def user_search(s: Session, user: User, search_id: int) -> SearchState:
    """`search_state` of one of the user's searches.

    Raises:
        ApiError: 404 when there is no such search or another user owns it.
    """
    owned(s, Search, search_id, user)
    return search_state(s, search_id)


def list_searches(s: Session, user: User, size: int, token: str | None) -> tuple[list[SearchState], str | None]:
    """One page of `size` of the user's searches, newest first, and the next page's token."""
    rows, token = paginate(s, select(Search).where(Search.user_id == user.id), Search.id, size, token)
    ids = [r.job_id for r in rows if r.job_id is not None]
    query = select(Job.id, Job.status, EMPTY_REASON).where(Job.id.in_(ids))
    by_job = {job_id: (status, reason) for job_id, status, reason in s.execute(query)}
    return [(r, *by_job.get(r.job_id or 0, (None, None))) for r in rows], token


def front_rows(s: Session, search: Search) -> tuple[list[Subnet], dict[str, Any] | None]:
    """The search's Pareto members (in id order) and its job's per-target measurement drift."""
    query = select(Subnet).where(Subnet.search_id == search.id, Subnet.pareto_rank == 0).order_by(Subnet.id)
    drift = s.scalar(select(DRIFT).where(Job.id == search.job_id)) if search.job_id is not None else None
    return list(s.scalars(query)), drift
