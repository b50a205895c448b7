"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import Context
from api.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}})
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ready", "database": "sqlite"}}}},
        503: {"description": "the database is unreachable"},
    },
)
def readyz(ctx: Context) -> JSONResponse:
    """The database answers: the service can take requests."""
    try:
        with ctx.db.reader() as s:
            s.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return error_response(503, "unavailable", f"database unreachable: {type(error).__name__}")
    return JSONResponse({"status": "ready", "database": ctx.db.dialect})
