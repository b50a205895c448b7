"""What route handlers get injected: the service context, the authenticated user, page parameters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Query, Request

from api.auth import TokenCache
from api.errors import ApiError
from api.services.fronts import FrontCache
from store.artifacts import ArtifactStore
from store.db import Database, utcnow
from store.models import User
from store.queue import JobQueue
from store.settings import Settings


@dataclass
class ServiceContext:
    """The service's shared objects, one per app.

    Attributes:
        settings: where state lives.
        db: the SQL store.
        store: the artefact store.
        queue: the job queue on `db`.
        clock: the current UTC time (tests pass a fake one).
        max_body_bytes: larger request bodies get 413.
        agent_lease_s: default lease of a measurement task handed to an agent.
        sse_poll_s: how often an event stream looks for new events.
        fronts: rendered Pareto fronts of ended searches.
        tokens: recently authenticated tokens (a revoked token works up to twice its TTL longer).
    """

    settings: Settings
    db: Database
    store: ArtifactStore
    queue: JobQueue
    clock: Callable[[], dt.datetime] = field(default=utcnow)
    max_body_bytes: int = 16 << 20
    agent_lease_s: float = 300.0
    sse_poll_s: float = 0.5
    fronts: FrontCache = field(default_factory=FrontCache)
    tokens: TokenCache = field(default_factory=TokenCache)


async def get_context(request: Request) -> ServiceContext:
    """The app's `ServiceContext`."""
    ctx: ServiceContext = request.app.state.context
    return ctx


Context = Annotated[ServiceContext, Depends(get_context)]


async def current_user(request: Request, ctx: Context) -> User:
    """The user of the request's ``Authorization: Bearer <token>``.

    Async, so that a cached token costs no trip through the thread pool; a lookup runs there.

    Raises:
        ApiError: 401 when the header is missing, malformed, or the token is unknown or revoked.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>'")
    token = token.strip()
    user = await ctx.tokens.user(ctx.db, token)
    if user is None:
        raise ApiError(401, "unauthorized", "invalid or revoked API token")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


@dataclass(frozen=True)
class PageParams:
    """`page_size` and `page_token` of a list request."""

    page_size: int
    page_token: str | None


def page_params(
    page_size: Annotated[int, Query(ge=1, le=200, description="items per page")] = 50,
    page_token: Annotated[
        str | None, Query(max_length=64, description="the `next_page_token` of the previous page")
    ] = None,
) -> PageParams:
    """The page parameters of a list request."""
    return PageParams(page_size, page_token)


Page = Annotated[PageParams, Depends(page_params)]
