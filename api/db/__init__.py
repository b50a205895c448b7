"""The SQL store: models, engine/sessions, migrations."""

from api.db.base import Base, utcnow
from api.db.engine import Database, retrying
from api.db.migrate import downgrade, upgrade

__all__ = ["Base", "Database", "downgrade", "retrying", "upgrade", "utcnow"]
