"""The SQL store: migrations up and down on SQLite and PostgreSQL, models in step with them, engines."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

from store.db import Base, Database, downgrade, upgrade
from store.migrate import current_revision, head_revision, main
from store.models import Job, JobStatus, User

TABLES = {
    "users", "api_tokens", "artifacts", "jobs", "job_status_changes", "job_events", "supernets", "searches",
    "subnets", "targets", "latency_tables", "latency_measurements", "agents", "agent_tasks", "datasets",
    "cluster_reports",
}  # fmt: skip


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_from_empty_to_head_and_back_down(db_url: str) -> None:
    assert _tables(db_url) == set()
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    assert _tables(db_url) == TABLES
    downgrade(db_url)
    assert current_revision(db_url) is None
    assert _tables(db_url) == set()
    upgrade(db_url)  # and up again: the downgrade left nothing behind (e.g. types, indexes)
    assert _tables(db_url) == TABLES


def test_models_match_the_migrations(store_db: Database) -> None:
    with store_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_migrate_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    main(["upgrade", url])
    assert current_revision(url) == head_revision()
    main(["downgrade", url])
    assert current_revision(url) is None


def test_timestamps_round_trip_as_aware_utc(store_db: Database) -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with store_db.session() as s:
        s.add(User(name="ada", created_at=moment))
    with store_db.reader() as s:
        user = s.scalars(select(User)).one()
    assert user.created_at == moment
    assert user.created_at.tzinfo == dt.UTC
    with pytest.raises(Exception, match="naive datetime"), store_db.session() as s:
        s.add(User(name="bob", created_at=dt.datetime(2026, 1, 1)))


def test_job_status_is_stored_as_its_name(store_db: Database) -> None:
    with store_db.session() as s:
        s.add(Job(kind="noop", params={}))
    with store_db.reader() as s:
        raw = s.execute(text("SELECT status FROM jobs")).scalar_one()
        job = s.scalars(select(Job)).one()
    assert raw == "QUEUED" and job.status is JobStatus.QUEUED


def test_sqlite_is_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'sub' / 'x.db'}", busy_timeout_ms=1234)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()
    assert sqlite3.connect(tmp_path / "sub" / "x.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        Database("sqlite://")
