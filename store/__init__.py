"""The store: SQL models and Alembic migrations, engine and sessions, the job lease queue, artefacts, settings.

`store.db` gathers the engine and migration entry points (``from store.db import Database, upgrade``);
`store.models` the tables, `store.queue` the job queue, `store.artifacts` the artefact store,
`store.settings` the service's settings. Nothing here imports the service, the workers or the CLI.
"""
