"""Shared helpers of the API tests: a migrated store, a service context, users with tokens, a tiny ONNX model."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from api.app import create_app
from api.auth import create_token, create_user
from api.context import ServiceContext
from store.artifacts import LocalArtifactStore
from store.db import Database, upgrade
from store.queue import JobQueue
from store.settings import Settings


class FakeClock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Users:
    """Two users and their bearer headers."""

    a: dict[str, str]
    b: dict[str, str]
    a_id: int
    b_id: int


def make_context(home: Path, **options: object) -> ServiceContext:
    """A service context on a migrated SQLite store under `home`."""
    settings = Settings.local(home)
    upgrade(settings.db_url)
    db = Database(settings.db_url)
    clock = options.pop("clock", None)
    ctx = ServiceContext(settings, db, LocalArtifactStore(settings.artifacts_path), JobQueue(db), **options)  # type: ignore[arg-type]
    if clock is not None:
        ctx.clock = clock  # type: ignore[assignment]
        ctx.queue = JobQueue(db, clock=clock)  # type: ignore[arg-type]
    return ctx


def make_users(db: Database) -> Users:
    """Users alice and bob with one token each."""
    a, b = create_user(db, "alice"), create_user(db, "bob")
    return Users(
        a={"Authorization": f"Bearer {create_token(db, a.id)}"},
        b={"Authorization": f"Bearer {create_token(db, b.id)}"},
        a_id=a.id,
        b_id=b.id,
    )


def tiny_onnx() -> bytes:
    """A small ONNX model (conv + relu on 1x3x16x16), built with the onnx helper API."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["out"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 16, 16])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@contextmanager
def serving(ctx: ServiceContext, port: int) -> Iterator[str]:
    """The app on `ctx` at 127.0.0.1:`port` in a thread for the duration of the block; its URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(context=ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), f"the server did not start on port {port}"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
