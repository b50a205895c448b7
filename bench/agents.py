"""The service and its device agents as benchmarks run them: the API served on loopback, tasks queued over REST."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Service:
    """The API served on loopback for the run.

    Attributes:
        url: its base URL.
        token: a user's API token.
        db_url: the store's database (a worker of the run opens it too).
        home: the store's folder (its artefacts).
    """

    url: str
    token: str
    db_url: str
    home: Path

    def client(self) -> httpx.Client:
        """An HTTP client of the user's."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)


@contextmanager
def serve(home: Path, user: str = "bench") -> Iterator[Service]:
    """The API (uvicorn, a subprocess) on a fresh SQLite store under `home`, with a user and its token."""
    from api.auth import create_token, create_user
    from bench.api import free_port, start_server
    from store.db import Database, upgrade

    url = f"sqlite:///{home / 'hwnas.db'}"
    upgrade(url)
    db = Database(url)
    token = create_token(db, create_user(db, user).id)
    db.dispose()
    port = free_port()
    server = start_server(url, home, port)
    try:
        yield Service(f"http://127.0.0.1:{port}", token, url, home)
    finally:
        server.terminate()
        server.wait(timeout=30)


def queue_subnet_tasks(
    http: httpx.Client, target: str, archs: Sequence[Mapping[str, Any]], space: str, settings: dict[str, Any]
) -> list[int]:
    """One measurement task per subnet (its ONNX file, fresh weights) on `target`; the tasks' ids."""
    from nas.spaces import get_space
    from predictors.latency.models import subnet_onnx

    preset = get_space(space)
    ids = []
    for arch in archs:
        body = {"model_base64": base64.b64encode(subnet_onnx(preset, arch)).decode(), "settings": settings,
                "space": space, "arch": dict(arch)}  # fmt: skip
        response = http.post(f"/v1/targets/{target}/tasks", json=body)
        response.raise_for_status()
        ids.append(int(response.json()["id"]))
    return ids


def wait_tasks(http: httpx.Client, target: str, ids: Sequence[int], timeout_s: float) -> list[dict[str, Any]]:
    """The tasks once none of them waits or runs any more.

    Raises:
        TimeoutError: some are still waiting after `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        tasks = [http.get(f"/v1/targets/{target}/tasks/{i}").json() for i in ids]
        if all(t["status"] in ("DONE", "FAILED") for t in tasks):
            return tasks
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(t['status'] not in ('DONE', 'FAILED') for t in tasks)} tasks still pending")
        time.sleep(0.5)


@contextmanager
def local_agents(service: Service, target: str, names: Sequence[str], logs: Path) -> Iterator[None]:
    """``hwnas agent`` processes of this checkout (one ONNX Runtime thread each) for `target`, until the block ends.

    Each agent is pinned to a core of its own (round robin over this process's cores), as separate boards
    would be: two measuring processes that the scheduler moves between the same cores disturb each other.
    """
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HWNAS_SERVER": service.url, "HWNAS_TOKEN": service.token, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "workers.agent", "--target", target, "--poll", "0.2"]
    cores = sorted(os.sched_getaffinity(0))
    agents = [
        subprocess.Popen(
            ["taskset", "-c", str(cores[i % len(cores)]), *command, "--name", name],
            env=env,
            stdout=(logs / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i, name in enumerate(names)
    ]
    try:
        yield
    finally:
        for agent in agents:
            agent.terminate()
            agent.wait(timeout=30)
