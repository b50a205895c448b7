"""Shared fixtures: databases (SQLite, PostgreSQL), the service context's users and client, local Ray, torch threads.

Nothing here imports torch at import time, so the store and API tests run without it; the folders whose tests run
torch set its threads in their own conftest.py (tests/nas/conftest.py also holds the OFA reference fixtures).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for tiny models: two spinning OpenMP threads crawl on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- the SQL store (issue 7): a SQLite file per test, or a fresh PostgreSQL database per test ----

PG_ADMIN_URL = os.environ.get("HWNAS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
"""A database on the shared PostgreSQL server from which test databases are created and dropped."""


def _pg_reachable(url: str) -> bool:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The admin URL of the PostgreSQL server; skips the test when the server is not reachable."""
    if not _pg_reachable(PG_ADMIN_URL):
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A new, empty database ``hwnas_test_<random>`` on the server, dropped after the test."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"hwnas_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, then (second parameter) a fresh PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'hwnas.db'}"


@pytest.fixture
def store_db(db_url: str) -> Iterator[Any]:
    """A `store.db.Database` on `db_url`, migrated to the newest revision."""
    from store.db import Database, upgrade

    upgrade(db_url)
    db = Database(db_url)
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def users(ctx: Any) -> Any:
    """Two users with tokens on the module's service context `ctx` (see api_helpers.make_users)."""
    from tests.api_helpers import make_users

    return make_users(ctx.db)


@pytest.fixture
def client(ctx: Any) -> Iterator[Any]:
    """A TestClient of the app on the module's service context `ctx`."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(context=ctx)) as c:
        yield c


@pytest.fixture
def live_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A served app (`tests.cli.test_client.live_server`) that ``hwnas`` commands reach as user a.

    ``HWNAS_SERVER`` and ``HWNAS_TOKEN`` point at it, and ``COLUMNS`` is wide so tables never wrap.
    """
    from tests.cli.test_client import live_server

    with live_server(tmp_path / "home") as served:
        monkeypatch.setenv("HWNAS_SERVER", served.url)
        monkeypatch.setenv("HWNAS_TOKEN", served.token())
        monkeypatch.setenv("COLUMNS", "200")
        yield served


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray with 2 CPUs for the module (reused if one is already running)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()
