"""The SQL store, its engine and sessions, and its migrations."""

from store.base import Base, utcnow
from store.engine import Database, retrying
from store.migrate import downgrade, upgrade

__all__ = ["Base", "Database", "downgrade", "retrying", "upgrade", "utcnow"]
