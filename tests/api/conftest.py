"""The API tests' service context: a fresh SQLite store and artefact directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.context import ServiceContext
from tests.api_helpers import make_context


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServiceContext]:
    """A service context under `tmp_path` whose event streams poll every 10 ms (fast SSE tests)."""
    context = make_context(tmp_path, sse_poll_s=0.01)
    yield context
    context.db.dispose()
