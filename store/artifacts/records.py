"""Artefacts in SQL: register what the store wrote, read back with the recorded sha256 verified."""

from __future__ import annotations

from typing import BinaryIO

from sqlalchemy.orm import Session

from store.artifacts.base import ArtifactStore, StoredFile
from store.models import Artifact


def register_artifact(
    session: Session, stored: StoredFile, *, kind: str, job_id: int | None = None, user_id: int | None = None
) -> Artifact:
    """Add the row of a stored file (flushed, so its id is set) in the caller's transaction."""
    row = Artifact(key=stored.key, kind=kind, size=stored.size, sha256=stored.sha256, job_id=job_id, user_id=user_id)
    session.add(row)
    session.flush()
    return row


def open_artifact(store: ArtifactStore, artifact: Artifact) -> BinaryIO:
    """A reader of the artefact, checked against the recorded sha256 before its first byte.

    Raises:
        ArtifactIntegrityError: the content was altered (the error is raised here, not while reading).
    """
    return store.open_verified(artifact.key, artifact.sha256)


def read_artifact(store: ArtifactStore, artifact: Artifact) -> bytes:
    """The artefact's bytes, verified against the recorded sha256."""
    return store.get(artifact.key, artifact.sha256)
