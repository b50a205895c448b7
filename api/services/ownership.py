"""The owner check every user resource goes through: another user's row is as missing as no row."""

from __future__ import annotations

from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from api.errors import not_found
from store.models import User


class Owned(Protocol):
    """A row that belongs to a user."""

    @property
    def user_id(self) -> int | None:
        """The owner's id."""


RowT = TypeVar("RowT", bound=Owned)


def owned(session: Session, model: type[RowT], ident: int, user: User, field: str | None = None) -> RowT:
    """The row of `model` with id `ident` when `user` owns it.

    Args:
        session: the session to read it in.
        model: the mapped class, e.g. `store.models.Supernet`; its lower-cased name names it in the 404.
        ident: the row's id.
        user: who asks.
        field: the request field that named the row (e.g. ``supernet_id``), if any.

    Raises:
        ApiError: 404 ``not_found`` when there is no such row or another user owns it (so that
            existence does not leak).
    """
    row = session.get(model, ident)
    if row is None or row.user_id != user.id:
        raise not_found(model.__name__.lower(), ident, field)
    return row
