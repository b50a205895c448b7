"""Pieces shared by the resource routers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Header, Path, Response

from api.db.models import Artifact
from api.storage import ArtifactStore, open_artifact
from api.storage.base import CHUNK

SHA_HEADER = "X-Content-SHA256"
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


def accepted(response: Response, location: str, created: bool) -> None:
    """Mark a creation response: 202 with `Location` (and whether it replays an earlier request)."""
    response.status_code = 202
    response.headers["Location"] = location
    if not created:
        response.headers["Idempotent-Replayed"] = "true"


def stream_artifact(store: ArtifactStore, artifact: Artifact) -> Iterator[bytes]:
    """The artefact's bytes in chunks; reading to the end verifies the recorded sha256 (a mismatch aborts)."""
    with open_artifact(store, artifact) as fp:
        while chunk := fp.read(CHUNK):
            yield chunk
