"""A store, a queue, an in-process runner and a user in a temporary directory: the job tests' service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_token, create_user
from api.context import ServiceContext
from store.artifacts import LocalArtifactStore
from store.db import Database, upgrade
from store.queue import JobQueue
from store.settings import Settings
from workers.kinds import validate_params
from workers.runner import Runner


class Service:
    """A store, a queue, an in-process runner and a user, in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.settings = Settings(home=root)
        upgrade(self.settings.db_url)
        self.db = Database(self.settings.db_url)
        self.queue = JobQueue(self.db)
        self.store = LocalArtifactStore(self.settings.artifacts_path)
        self.runner = Runner(self.queue, self.store, self.settings.runs_path, lease_s=60, progress_interval_s=0)
        self.user_id = create_user(self.db, "tester").id
        self.headers = {"Authorization": f"Bearer {create_token(self.db, self.user_id)}"}
        self.supernet_id = 0

    def submit(self, kind: str, params: dict[str, Any]) -> Any:
        """Queue a job of the user's."""
        return self.queue.submit(kind, validate_params(kind, params), user_id=self.user_id)[0]

    def run(self, kind: str, params: dict[str, Any]) -> Any:
        """Queue a job and run it to its end."""
        job = self.submit(kind, params)
        done = self.runner.run_once()
        assert done is not None and done.id == job.id
        return done

    def api(self) -> TestClient:
        """The REST API on this store."""
        return TestClient(create_app(context=self.context()))

    def context(self) -> ServiceContext:
        """The service context on this store (for the API, in process or served)."""
        return ServiceContext(self.settings, self.db, self.store, self.queue)
