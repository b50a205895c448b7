"""Keyset pagination, newest first: a page token encodes the last id of the previous page."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.errors import invalid

T = TypeVar("T")


def encode_token(last_id: int) -> str:
    """The opaque token of the page after `last_id`."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    """The last id a token encodes.

    Raises:
        ApiError: 422 naming ``page_token`` when it is not one this API issued.
    """
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "id":
            raise ValueError(text)
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise invalid("page_token", "not a token from a previous page's next_page_token") from None


def paginate(
    session: Session, query: Select[T], id_column: InstrumentedAttribute[Any], size: int, token: str | None
) -> tuple[Sequence[T], str | None]:
    """One page of `query`'s rows by descending id, and the token of the next page (None: last page)."""
    if token is not None:
        query = query.where(id_column < decode_token(token))
    rows = session.scalars(query.order_by(id_column.desc()).limit(size + 1)).all()
    if len(rows) <= size:
        return rows, None
    rows = rows[:size]
    return rows, encode_token(getattr(rows[-1], id_column.key))
