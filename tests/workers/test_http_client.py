"""`workers.http_client` against real loopback servers that fail, then recover: what is retried and what is not."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.workers.flaky import Flaky, flaky_server, free_port, serve
from workers.http_client import IDEMPOTENCY_HEADER, IDEMPOTENT, HttpClient, RetryPolicy

FAST = RetryPolicy(attempts=4, backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    with flaky_server() as server:
        yield server


def client(server: Flaky | int, policy: RetryPolicy = FAST) -> HttpClient:
    port = server if isinstance(server, int) else server.server_address[1]
    return HttpClient(base_url=f"http://127.0.0.1:{port}", timeout=5, retry=policy)


def test_get_is_retried_through_502_503_504_and_a_dropped_connection(flaky: Flaky) -> None:
    flaky.script = [502, 503, 0, 504]
    with client(flaky, RetryPolicy(attempts=5, backoff_s=0.01)) as http:
        response = http.get("/")
    assert (response.status_code, response.text, len(flaky.seen)) == (200, "ok", 5)


def test_a_post_is_retried_only_when_idempotent(flaky: Flaky) -> None:
    with client(flaky) as http:
        flaky.script = [503, 503]
        assert http.post("/", json={}).status_code == 503 and len(flaky.seen) == 1, "a plain POST is sent once"
        flaky.script, flaky.seen = [0], []
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/", json={})
        assert len(flaky.seen) == 1
        flaky.script, flaky.seen = [503, 0], []
        assert http.post("/", json={}, headers={IDEMPOTENCY_HEADER: "k1"}).status_code == 200
        assert len(flaky.seen) == 3
        flaky.script, flaky.seen = [502], []
        assert http.post("/", json={}, extensions={IDEMPOTENT: True}).status_code == 200 and len(flaky.seen) == 2


def test_other_errors_are_answered_at_once_and_retries_end(flaky: Flaky) -> None:
    with client(flaky) as http:
        for status in (404, 500, 409):
            flaky.script, flaky.seen = [status], []
            assert http.get("/").status_code == status and len(flaky.seen) == 1
        flaky.script, flaky.seen = [503] * 10, []
        assert http.get("/").status_code == 503 and len(flaky.seen) == FAST.attempts
    with client(flaky, RetryPolicy(attempts=1)) as http:
        flaky.script, flaky.seen = [503], []
        assert http.get("/").status_code == 503 and len(flaky.seen) == 1


def test_a_refused_connection_is_retried_for_any_request_until_the_server_is_up() -> None:
    port = free_port()
    servers: list[Flaky] = []

    def start() -> None:
        servers.append(Flaky(port, []))
        serve(servers[0])

    restart = threading.Timer(0.5, start)
    restart.start()
    try:
        with client(port, RetryPolicy(attempts=20, backoff_s=0.05, max_backoff_s=0.2)) as http:
            started = time.monotonic()
            response = http.post("/", json={"a": 1})  # refused: never sent, so even a POST is sent again
        assert response.status_code == 200 and time.monotonic() - started >= 0.4 and servers[0].seen == ["POST"]
    finally:
        restart.join()
        for server in servers:
            server.shutdown()
            server.server_close()
    with client(free_port(), FAST) as http, pytest.raises(httpx.ConnectError):
        http.get("/")


def test_policy_waits_double_up_to_the_cap_and_attempts_are_positive() -> None:
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.wait_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
