"""Readiness for the API: whether the database answers, and the damaged artefacts this process met."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from store.artifacts import ArtifactIntegrityError

if TYPE_CHECKING:  # api.context holds an `ArtifactFaults`
    from api.context import ServiceContext

log = logging.getLogger(__name__)


class ArtifactFaults:
    """The stored files this process found damaged when it was about to serve them, for the operator.

    Each is logged (key, recorded and actual sha256, the request) and counted once per key; the
    count is in `/readyz`'s body. The keys stay in the log: `/readyz` is unauthenticated.
    """

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def record(self, error: ArtifactIntegrityError, request: str) -> None:
        """Log and count a damaged artefact found while answering `request` (e.g. ``GET /v1/...``)."""
        log.error("%s; refused %s (restore the file or re-run the job that wrote it)", error, request)
        with self._lock:
            self._keys.add(error.key)

    def count(self) -> int:
        """How many distinct artefacts were found damaged since the process started."""
        with self._lock:
            return len(self._keys)


def database_error(ctx: ServiceContext) -> str | None:
    """None when the database answers a query, else the name of the error it gave."""
    try:
        with ctx.db.reader() as s:
            s.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return type(error).__name__
    return None
