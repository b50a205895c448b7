"""Engines and sessions: SQLite in WAL mode with a busy timeout, PostgreSQL through psycopg 3; retries.

SQLite allows one writer at a time. A transaction that reads and then writes can fail at once
(``database is locked``, without waiting) when another connection wrote in between, so write
sessions start with ``BEGIN IMMEDIATE``: they take the write lock first and wait for it up to
the busy timeout. Read-only sessions use a plain ``BEGIN`` and never block writers (WAL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")

_WRITE = "hwnas_write"


class Database:
    """An engine and its session factories for one database URL.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:////home/me/.hwnas/hwnas.db`` or
            ``postgresql+psycopg://user@host:5432/hwnas``.
        busy_timeout_ms: SQLite only: how long a connection waits for the write lock.
        pool_size: PostgreSQL only: connections kept open.
    """

    def __init__(self, url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 5) -> None:
        self.url = make_url(url)
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database
            if not database or database == ":memory:":
                raise ValueError(f"database URL {url!r}: SQLite needs a file (an in-memory database is per connection)")
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                self.url, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
            )
            _configure_sqlite(self.engine, busy_timeout_ms)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
        self._writer = sessionmaker(bind=self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)
        self._reader = sessionmaker(bind=self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session (its transaction is rolled back at the end)."""
        with self._reader() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Leave transaction control to the "begin" hook below, not to the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def is_transient(error: BaseException) -> bool:
    """Whether retrying the transaction may succeed: a dropped connection or a lock timeout."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, exc.OperationalError)


def retrying(fn: Callable[[], T], *, attempts: int = 8, delay_s: float = 0.25, max_delay_s: float = 5.0) -> T:
    """Call `fn` (one whole transaction) again after transient database errors, with exponential back-off.

    Raises:
        sqlalchemy.exc.DBAPIError: the last error, once `attempts` calls have failed, or a non-transient one.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except exc.DBAPIError as error:
            if attempt == attempts or not is_transient(error):
                raise
            wait = min(max_delay_s, delay_s * 2 ** (attempt - 1))
            log.warning("database error (attempt %d/%d), retrying in %.2fs: %s", attempt, attempts, wait, error.orig)
            time.sleep(wait)
    raise AssertionError("unreachable")
