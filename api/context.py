"""The service context: the objects one API process shares (settings, SQL store, artefact store, job queue)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from api.auth import TokenCache
from api.services.fronts import FrontCache
from api.services.health import ArtifactFaults
from store.artifacts import ArtifactStore
from store.db import Database, utcnow
from store.queue import JobQueue
from store.settings import Settings


@dataclass
class ServiceContext:
    """The service's shared objects, one per app.

    Attributes:
        settings: where state lives.
        db: the SQL store.
        store: the artefact store.
        queue: the job queue on `db`.
        clock: the current UTC time (tests pass a fake one).
        max_body_bytes: larger request bodies get 413.
        agent_lease_s: default lease of a measurement task handed to an agent.
        sse_poll_s: how often an event stream looks for new events.
        fronts: rendered Pareto fronts of ended searches.
        tokens: recently authenticated tokens (a revoked token works up to twice its TTL longer).
        artifact_faults: the damaged artefacts this process refused to serve.
    """

    settings: Settings
    db: Database
    store: ArtifactStore
    queue: JobQueue
    clock: Callable[[], dt.datetime] = field(default=utcnow)
    max_body_bytes: int = 16 << 20
    agent_lease_s: float = 300.0
    sse_poll_s: float = 0.5
    fronts: FrontCache = field(default_factory=FrontCache)
    tokens: TokenCache = field(default_factory=TokenCache)
    artifact_faults: ArtifactFaults = field(default_factory=ArtifactFaults)
