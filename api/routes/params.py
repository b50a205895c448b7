"""Path and header parameters shared by the resource routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path

MAX_ID = 2**63 - 1
"""The largest row id (a signed 64-bit integer in SQL); larger ids would overflow the database driver."""

ResourceId = Annotated[int, Path(ge=1, le=MAX_ID, description="the resource's id")]

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="retrying with the same key returns the original job; the same key with another body is a 409",
    ),
]
