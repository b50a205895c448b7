"""`cli.client.Client` against a real uvicorn server on loopback: requests, JSON errors, SSE resume, downloads."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from api.context import ServiceContext
from cli.client import Client, ClientError
from store.artifacts import register_artifact
from store.models import Subnet, Supernet
from tests.api_helpers import Users, make_context, make_users
from workers.http_client import RetryPolicy

SPACE = "ofa_mbv3_d234_e346_k357_32px"
ARCH = {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 32}


@dataclass
class Live:
    """A served app: its URL, context and users."""

    url: str
    ctx: ServiceContext
    users: Users

    def token(self, who: str = "a") -> str:
        return getattr(self.users, who)["Authorization"].removeprefix("Bearer ")


@contextmanager
def live_server(home: Path, *, start_after_s: float = 0.0) -> Iterator[Live]:
    """The app on a free loopback port, in a thread, for the duration of the block.

    With `start_after_s`, the block begins at once and the server listens only that much later, as
    a service that restarts: until then, connections are refused.
    """
    ctx = make_context(home, sse_poll_s=0.01)
    users = make_users(ctx.db)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(context=ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Timer(start_after_s, server.run)
    thread.daemon = True
    thread.start()
    try:
        while not start_after_s and not server.started:
            time.sleep(0.02)
        yield Live(f"http://127.0.0.1:{port}", ctx, users)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.db.dispose()


def add_search_with_front(live: Live, user_id: int, points: int = 3) -> tuple[int, list[int]]:
    """A supernet, a search through the API, and `points` Pareto subnets (the first with a bundle)."""
    with live.ctx.db.session() as s:
        supernet = Supernet(user_id=user_id, space=SPACE, dataset="demo", strategy="sandwich", config={"space": SPACE})
        s.add(supernet)
        s.flush()
        supernet_id = supernet.id
    with Client(live.url, live.token()) as client:
        search = client.submit_search({"supernet_id": supernet_id, "objectives": ["accuracy", "macs"], "budget": 10})
    ids = []
    with live.ctx.db.session() as s:
        for i in range(points):
            row = Subnet(
                user_id=user_id, supernet_id=supernet_id, search_id=search["id"], arch_key=f"k{i}", arch=ARCH,
                predicted={"accuracy": 0.5 + i / 10, "macs": 1e6 * (i + 1)}, validated={"accuracy": 0.48 + i / 10},
                pareto_rank=0,
            )  # fmt: skip
            if i == 0:
                stored = live.ctx.store.put("bundles/s0.zip", bundle())
                row.bundle_artifact_id = register_artifact(s, stored, kind="bundle").id
            s.add(row)
            s.flush()
            ids.append(row.id)
    return search["id"], ids


def bundle() -> bytes:
    """A bundle zip as the export job writes it (arch.json records each member's sha256)."""
    members = {"model.onnx": b"onnx bytes", "weights.safetensors": b"weights bytes"}
    meta = {"sha256": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in {**members, "arch.json": json.dumps(meta).encode()}.items():
            # a fixed timestamp: with the clock's, two calls a second apart gave different bytes
            zf.writestr(zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with live_server(tmp_path) as served:
        yield served


def test_search_lifecycle_pareto_and_download(live: Live, tmp_path: Path) -> None:
    search_id, ids = add_search_with_front(live, live.users.a_id)
    with Client(live.url, live.token()) as client:
        search = client.search(search_id)
        assert search["status"] == "QUEUED" and search["objectives"] == ["accuracy", "macs"]
        assert [s["id"] for s in client.list("searches")["items"]] == [search_id]
        front = client.pareto(search_id)
        assert [p["subnet_id"] for p in front["points"]] == ids
        assert client.pareto_csv(search_id).splitlines()[0].startswith("subnet_id,arch_key,pareto_rank")
        digest = client.download(ids[0], tmp_path / "m.onnx")
        assert (tmp_path / "m.onnx").read_bytes() == b"onnx bytes" and digest == hashlib.sha256(
            b"onnx bytes"
        ).hexdigest()
        client.download(ids[0], tmp_path / "b.zip", format="bundle")
        assert zipfile.ZipFile(tmp_path / "b.zip").read("weights.safetensors") == b"weights bytes"
        with pytest.raises(ClientError) as not_ready:
            client.download(ids[1], tmp_path / "nope.onnx")
        assert (not_ready.value.status, not_ready.value.code) == (409, "not_ready")
        assert not (tmp_path / "nope.onnx").exists() and not (tmp_path / "nope.onnx.part").exists()
        assert client.cancel(search_id)["status"] == "CANCELLED"
        events = list(client.events(search["job_id"]))
        assert [e.data["status"] for e in events if e.event == "status"] == ["QUEUED", "CANCELLED"]
        resumed = list(client.events(search["job_id"], last_event_id=events[0].id))
        assert resumed == events[1:]


def test_a_corrupted_download_is_refused_and_removed(live: Live, tmp_path: Path) -> None:
    _, ids = add_search_with_front(live, live.users.a_id, points=1)
    path = live.ctx.settings.artifacts_path / "bundles" / "s0.zip"
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with Client(live.url, live.token()) as client, pytest.raises(ClientError):
        client.download(ids[0], tmp_path / "b.zip", format="bundle")
    assert not (tmp_path / "b.zip").exists()


def test_errors_are_client_errors_with_code_and_field(live: Live) -> None:
    search_id, ids = add_search_with_front(live, live.users.a_id, points=1)
    with Client(live.url, live.token("b")) as other:
        for call in (lambda: other.search(search_id), lambda: other.cancel(search_id), lambda: other.pareto(search_id),
                     lambda: other.download(ids[0], "x.onnx"), lambda: next(iter(other.events(1)))):  # fmt: skip
            with pytest.raises(ClientError) as error:
                call()
            assert (error.value.status, error.value.code) == (404, "not_found")
        with pytest.raises(ClientError) as error:
            other.submit_search({"supernet_id": 1, "objectives": ["accuracy"], "budget": 0})
        assert (error.value.status, error.value.field) == (422, "budget") and "budget" in str(error.value)
    with Client(live.url, "wrong") as bad, pytest.raises(ClientError) as error:
        bad.job(1)
    assert error.value.status == 401
    with (
        Client("http://127.0.0.1:9", "t", timeout=2, retry=RetryPolicy(attempts=2, backoff_s=0.01)) as nowhere,
        pytest.raises(ClientError) as error,
    ):
        nowhere.job(1)
    assert error.value.status == 0 and "cannot reach" in str(error.value)


def test_requests_wait_for_a_server_that_restarts(tmp_path: Path) -> None:
    retry = RetryPolicy(attempts=40, backoff_s=0.05, max_backoff_s=0.25)
    with live_server(tmp_path, start_after_s=0.5) as live, Client(live.url, live.token(), retry=retry) as client:
        with pytest.raises(ClientError) as answered:  # refused, so sent again until the service answers
            client.submit_search({"supernet_id": 99, "objectives": ["accuracy"], "budget": 10})
        assert (answered.value.status, answered.value.code) == (404, "not_found")
        assert client.list("searches")["items"] == []
