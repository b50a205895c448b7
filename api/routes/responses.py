"""Responses shared by the resource routers: 202 Accepted with `Location`, artefact downloads."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Response

from store.artifacts import ArtifactStore, open_artifact
from store.artifacts.base import CHUNK
from store.models import Artifact

SHA_HEADER = "X-Content-SHA256"


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
