"""Responses shared by the resource routers: 202 Accepted with `Location`, artefact downloads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

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
    """The artefact's bytes in chunks, from a file whose sha256 was checked before this returns.

    Call it before the response starts: a damaged file raises here, so that the client gets an
    ``artifact_corrupt`` error instead of a 200 with the damaged bytes.

    Raises:
        ArtifactIntegrityError: the stored file differs from its recorded sha256.
    """
    return _chunks(open_artifact(store, artifact))


def _chunks(fp: BinaryIO) -> Iterator[bytes]:
    with fp:
        while chunk := fp.read(CHUNK):
            yield chunk
