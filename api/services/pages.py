"""Keyset pagination, newest first: a page token encodes the last id of the previous page."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.errors import invalid
from api.schemas.base import MAX_ID

T = TypeVar("T")

_TOKEN = re.compile(r"id:([1-9][0-9]{0,18})")
"""A token's text: ``id:`` and a positive decimal id of at most 19 digits (`MAX_ID` has 19)."""


def encode_token(last_id: int) -> str:
    """The opaque token of the page after `last_id`."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    """The last id a token encodes: a row id, from 1 to `MAX_ID`.

    Raises:
        ApiError: 422 naming ``page_token`` when it is not one this API issued (an id out of range
            included: it would overflow the database driver).
    """
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        text = ""
    match = _TOKEN.fullmatch(text)
    if match is None or int(match[1]) > MAX_ID:
        raise invalid("page_token", "not a token from a previous page's next_page_token")
    return int(match[1])


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
