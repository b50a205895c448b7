"""Readiness for the API: whether the database answers."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.context import ServiceContext


def database_error(ctx: ServiceContext) -> str | None:
    """None when the database answers a query, else the name of the error it gave."""
    try:
        with ctx.db.reader() as s:
            s.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        return type(error).__name__
    return None
