"""The FastAPI application: ``create_app(settings)`` wires the store, the queue, auth and the ``/v1`` routers.

Serve it with ``uvicorn --factory api.app:create_app`` (settings from ``HWNAS_*``) or ``hwnas serve``.
Importing this module loads neither torch nor onnxruntime nor Ray.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import nas
from api.context import ServiceContext
from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.routes import agents, checkpoints, datasets, health, jobs, searches, subnets, supernets, targets, ui
from api.services.targets import seed_builtin
from store.artifacts import LocalArtifactStore
from store.db import Database
from store.queue import JobQueue
from store.settings import Settings

DESCRIPTION = """\
Hardware-aware NAS as a service: train a once-for-all supernet, search it for the subnets that
are best on your devices, download them.

Authenticate with ``Authorization: Bearer <token>`` (``hwnas admin create-token``). Creation
returns ``202 Accepted`` with ``Location``; send ``Idempotency-Key`` to make retries safe. Lists
take ``page_size`` and ``page_token``. Every error is ``{code, message, field}``.
"""


def create_app(settings: Settings | None = None, *, context: ServiceContext | None = None) -> FastAPI:
    """The API application.

    Args:
        settings: where state lives (default: from ``HWNAS_*``); the database must be migrated
            (``python -m store.migrate upgrade``; ``hwnas serve`` does it).
        context: a ready service context instead (tests use it for a fake clock or small limits).

    At start-up the built-in targets get their shared rows, so that no request that reads writes.
    """
    if context is None:
        settings = settings or Settings()
        db = Database(settings.db_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        context = ServiceContext(settings, db, LocalArtifactStore(settings.artifacts_path), JobQueue(db))
    switch_interval_s = context.settings.gil_switch_interval_ms / 1000

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        seed_builtin(context.db)
        before = sys.getswitchinterval()
        sys.setswitchinterval(switch_interval_s)
        try:
            yield
        finally:
            sys.setswitchinterval(before)

    app = FastAPI(title="hwnas", version=nas.__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.context = context
    install_error_handlers(app)
    for module in (health, datasets, checkpoints, supernets, searches, subnets, jobs, targets, agents, ui):
        app.include_router(module.router)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=context.max_body_bytes,
        larger={
            "/v1/datasets": context.settings.max_dataset_bytes,
            "/v1/checkpoints": context.settings.max_dataset_bytes,
        },
    )
    return app
