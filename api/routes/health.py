"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import Context
from api.errors import error_response
from api.services.health import database_error

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}})
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {
            "description": "`corrupt_artifacts` appears once this process has refused to serve a damaged stored file",
            "content": {"application/json": {"example": {"status": "ready", "database": "sqlite"}}},
        },
        503: {"description": "the database is unreachable"},
    },
)
def readyz(ctx: Context) -> JSONResponse:
    """The database answers: the service can take requests (with the count of damaged artefacts met, if any)."""
    error = database_error(ctx)
    if error is not None:
        return error_response(503, "unavailable", f"database unreachable: {error}")
    body: dict[str, str | int] = {"status": "ready", "database": ctx.db.dialect}
    if corrupt := ctx.artifact_faults.count():
        body["corrupt_artifacts"] = corrupt
    return JSONResponse(body)
