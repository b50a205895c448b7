"""Path and header parameters shared by the resource routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path

from api.schemas.base import MAX_ID

ResourceId = Annotated[int, Path(ge=1, le=MAX_ID, description="the resource's id")]

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="retrying with the same key returns the original job; the same key with another body is a 409",
    ),
]
