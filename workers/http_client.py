"""The HTTP client of the ``hwnas`` CLI and of the device agent: httpx that retries transient failures.

Light on purpose (httpx only), because the agent runs on small devices. Which failures are
transient, which requests may be sent again and how long to wait is a `RetryPolicy`:

- a request that could not connect (connection refused while the service restarts, a connect
  timeout) never reached the service, so any request is sent again;
- a broken connection after the request went out (`RetryPolicy.errors`) or an answer in
  `RetryPolicy.statuses` (502, 503, 504: a proxy or a service that is starting) is retried only for
  idempotent requests: the methods in `RetryPolicy.methods`, a request with an ``Idempotency-Key``
  header (the service answers a repeat with the first result), or one sent with the extension
  ``{IDEMPOTENT: True}`` by a caller that knows a repeat is harmless.

Waits double from `RetryPolicy.backoff_s` up to `RetryPolicy.max_backoff_s`; after
`RetryPolicy.attempts` tries the last answer is returned, or the last error raised.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())  # retries are told where logging is configured (the agent), not on bare stderr

IDEMPOTENT = "hwnas.idempotent"
"""Request extension: True marks a request (e.g. a POST) as safe to send again."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout)
"""Errors that mean the request never reached the service."""


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed requests are sent again, how often, and how long to wait in between.

    Attributes:
        attempts: tries per request, the first included (1: no retry).
        backoff_s: the wait after the first failure; it doubles after each one.
        max_backoff_s: the longest wait.
        statuses: answers that are retried (idempotent requests only).
        errors: transport errors after sending that are retried (idempotent requests only); errors
            before sending (`UNSENT`) are retried for every request.
        methods: the idempotent methods.
    """

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    statuses: frozenset[int] = frozenset({502, 503, 504})
    errors: tuple[type[httpx.TransportError], ...] = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
    methods: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")

    def idempotent(self, request: httpx.Request) -> bool:
        """Whether sending `request` twice has the effect of sending it once."""
        return (
            request.method in self.methods
            or IDEMPOTENCY_HEADER in request.headers
            or bool(request.extensions.get(IDEMPOTENT))
        )

    def wait_s(self, failures: int) -> float:
        """The wait after the `failures`-th failure of a request."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1)))


class HttpClient(httpx.Client):
    """An `httpx.Client` whose every request (streams too) is retried as `retry` says.

    Args:
        retry: the retry policy (default: `RetryPolicy()`).
        **kwargs: `httpx.Client`'s arguments (``base_url``, ``headers``, ``timeout``, ``transport``, ...).
    """

    def __init__(self, *, retry: RetryPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry = retry or RetryPolicy()

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        """Send `request`, again after transient failures; the last answer, or the last error raised.

        Raises:
            httpx.TransportError: the last try's error.
        """
        idempotent = self.retry.idempotent(request)
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = super().send(request, **kwargs)
            except UNSENT as error:
                if last:
                    raise
                problem = f"{type(error).__name__}: {error}"
            except self.retry.errors as error:
                if last or not idempotent:
                    raise
                problem = f"{type(error).__name__}: {error}"
            else:
                if last or not idempotent or response.status_code not in self.retry.statuses:
                    return response
                response.close()
                problem = f"HTTP {response.status_code}"
            wait = self.retry.wait_s(attempt)
            log.warning(
                "%s %s: %s; try %d of %d in %.1fs", request.method, request.url, problem, attempt + 1,
                self.retry.attempts, wait,
            )  # fmt: skip
            time.sleep(wait)
        raise AssertionError("unreachable")
