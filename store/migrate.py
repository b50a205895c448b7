"""Programmatic Alembic: upgrade or downgrade a database with the migrations shipped in this package.

``python -m store.migrate upgrade [URL]`` does the same from a shell (URL default: the settings').
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic configuration for `url` pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at `url` down to `revision` (default: empty)."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The newest revision shipped."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None: not migrated)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m store.migrate {upgrade,downgrade} [URL] [--revision R]``."""
    from store.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m store.migrate")
    parser.add_argument("action", choices=["upgrade", "downgrade"])
    parser.add_argument("url", nargs="?", help="database URL (default: HWNAS_DATABASE_URL or the SQLite file)")
    parser.add_argument("--revision", help="target revision (default: head for upgrade, base for downgrade)")
    args = parser.parse_args(argv)
    url = args.url or Settings().db_url
    if args.action == "upgrade":
        upgrade(url, args.revision or "head")
    else:
        downgrade(url, args.revision or "base")


if __name__ == "__main__":
    main()
