"""Concurrent requests for the same slow thing share one computation of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Coalesces concurrent calls by key: the first caller's `work` runs, the others await its result.

    Without it, a burst of clients that all miss a cache at once (a cold token, an unrendered front)
    sends the same work to the thread pool once per client. Nothing is cached here: a call after
    the work has finished runs it again. Use it from one event loop.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        """The result of `work`, or of the one already running for `key`.

        Its exception reaches every caller that waited on it. A caller that is cancelled does not
        cancel the work for the others.
        """
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(work())
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(running)
