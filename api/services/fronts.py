"""A cache of rendered Pareto fronts: a finished search's front never changes, so it is rendered once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from api.singleflight import SingleFlight


@dataclass(frozen=True)
class RenderedFront:
    """A front rendered in one format, and whose it is.

    Attributes:
        user_id: the owner of the search (others get a 404, as for an uncached front).
        body: the response body.
    """

    user_id: int | None
    body: bytes


class FrontCache:
    """A thread-safe LRU of rendered fronts of ended searches, keyed by (search id, format).

    Requests that miss at the same time share one rendering (`get_or_render`): without that, the
    first burst of clients on a popular front renders it once per client in the thread pool.

    Args:
        max_entries: how many rendered fronts to keep.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[int, str], RenderedFront] = OrderedDict()
        self._lock = threading.Lock()
        self._rendering: SingleFlight[tuple[int, str], RenderedFront] = SingleFlight()

    def get(self, search_id: int, fmt: str) -> RenderedFront | None:
        """The cached rendering, or None."""
        with self._lock:
            item = self._items.get((search_id, fmt))
            if item is not None:
                self._items.move_to_end((search_id, fmt))
            return item

    def put(self, search_id: int, fmt: str, front: RenderedFront) -> None:
        """Keep a rendering of an ended search's front (evicting the least recently used)."""
        with self._lock:
            self._items[(search_id, fmt)] = front
            self._items.move_to_end((search_id, fmt))
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    async def get_or_render(
        self, search_id: int, fmt: str, render: Callable[[], Awaitable[RenderedFront]]
    ) -> RenderedFront:
        """The cached rendering, else the result of `render`, run once for all concurrent callers.

        `render` decides whether its result is kept (`put`); see `SingleFlight` for errors and
        cancellation.
        """
        hit = self.get(search_id, fmt)
        return hit if hit is not None else await self._rendering.run((search_id, fmt), render)
