"""Leases on SQL rows: the claim mechanism of the job queue and of the agents' measurement tasks.

A leased table has a status and a lease-expiry column. A row is claimable when it waits (status
`LeasedTable.waiting`), or when it is leased (`LeasedTable.leased`), its lease expired and, on a
table that counts attempts, it has attempts left: a holder that vanished delays the row by one
lease, then the row is claimed again. A holder extends its lease by renewing it.

Claiming is atomic on both databases: on PostgreSQL the candidate row is locked with ``SELECT ...
FOR UPDATE SKIP LOCKED``, so concurrent claimers take different rows; on SQLite the write
transaction (``BEGIN IMMEDIATE``, see `store.engine`) holds the database lock, and the claim is a
conditional ``UPDATE ... WHERE id = :id AND <still claimable>`` whose returned row is checked.
Timestamps come from the caller's clock (UTC).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import QueryableAttribute, Session

from store.base import Base


class LeasedTable:
    """A table whose rows are leased, and the columns that hold the lease.

    Args:
        model: the mapped class.
        id: its primary key.
        status: its status column.
        expires_at: when the current lease ends.
        waiting: the status of a row that waits for a claim.
        leased: the status of a claimed row.
        attempts: claims so far (None: the table does not count them).
        max_attempts: the claims a row gets (with `attempts`).
    """

    def __init__(
        self,
        model: type[Base],
        id: QueryableAttribute[int],
        status: QueryableAttribute[Any],
        expires_at: QueryableAttribute[dt.datetime | None],
        *,
        waiting: Any,
        leased: Any,
        attempts: QueryableAttribute[int] | None = None,
        max_attempts: QueryableAttribute[int] | None = None,
    ) -> None:
        self.model, self.id, self.status, self.expires_at = model, id, status, expires_at
        self.waiting, self.leased = waiting, leased
        self.attempts, self.max_attempts = attempts, max_attempts

    def expired(self, now: dt.datetime) -> ColumnElement[bool]:
        """SQL condition: the row is leased and its lease ended before `now`."""
        return and_(self.status == self.leased, self.expires_at < now)

    def claimable(self, now: dt.datetime) -> ColumnElement[bool]:
        """SQL condition: the row waits, or its lease expired (with attempts left where they are counted)."""
        expired = self.expired(now)
        if self.attempts is not None and self.max_attempts is not None:
            expired = and_(expired, self.attempts < self.max_attempts)
        return or_(self.status == self.waiting, expired)

    def claim(
        self,
        session: Session,
        now: dt.datetime,
        lease_s: float,
        *,
        where: Sequence[ColumnElement[bool]] = (),
        order_by: Sequence[Any] = (),
        peek: Sequence[QueryableAttribute[Any]] = (),
        values: Mapping[str, Any] | None = None,
        returning: Sequence[QueryableAttribute[Any]] = (),
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
        """Lease the first claimable row (in `order_by` order, among those matching `where`) until `now` + `lease_s`.

        The row gets the leased status, the new expiry, one more attempt (where counted) and `values`.

        Args:
            session: a write transaction.
            now: the current UTC time.
            lease_s: how long the lease lasts.
            where: more conditions on the row.
            order_by: which claimable row comes first.
            peek: columns to read as they were before the claim.
            values: more columns to set.
            returning: columns to read as they are after the claim.

        Returns:
            The row's id and `peek` columns before the claim, and its id and `returning` columns after it;
            None when no row is claimable (or another claimer took it first).
        """
        claimable = self.claimable(now)
        query = select(self.id, *peek).where(claimable, *where).order_by(*order_by).limit(1)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        before = session.execute(query).one_or_none()
        if before is None:
            return None
        lease: dict[Any, Any] = {self.status: self.leased, self.expires_at: now + dt.timedelta(seconds=lease_s)}
        if self.attempts is not None:
            lease[self.attempts] = self.attempts + 1
        after = session.execute(
            update(self.model)
            .where(self.id == before[0], claimable)
            .values(lease)
            .values(**(values or {}))
            .returning(self.id, *returning)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        return None if after is None else (tuple(before), tuple(after))

    def renew(
        self,
        session: Session,
        now: dt.datetime,
        lease_s: float,
        fence: ColumnElement[bool],
        *,
        values: Mapping[str, Any] | None = None,
        returning: Sequence[QueryableAttribute[Any]] = (),
    ) -> tuple[Any, ...] | None:
        """Extend the lease of the row that `fence` matches (only while its holder still has it) to `now` + `lease_s`.

        Returns:
            The row's id and `returning` columns; None when `fence` matches no row (the lease is lost).
        """
        row = session.execute(
            update(self.model)
            .where(fence)
            .values({self.expires_at: now + dt.timedelta(seconds=lease_s)})
            .values(**(values or {}))
            .returning(self.id, *returning)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        return None if row is None else tuple(row)
