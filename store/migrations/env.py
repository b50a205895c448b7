"""Alembic environment of the hwnas store (online migrations; the URL comes from the config or the settings)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import store.models  # noqa: F401  (registers the tables on Base.metadata)
from store.base import Base
from store.engine import Database

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    from store.settings import Settings

    url = Settings().db_url

# Database() applies the SQLite pragmas (WAL, busy timeout, foreign keys) and creates the file's directory.
engine = Database(url).engine if url.startswith("sqlite") else create_engine(url)
try:
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
finally:
    engine.dispose()
