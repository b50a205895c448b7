"""FastAPI dependencies of the route handlers: the service context, the authenticated user, page parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from api.context import ServiceContext
from api.errors import ApiError
from store.models import User


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
