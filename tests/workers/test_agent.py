"""Measurement tasks for remote agents: leases, re-queueing, bad results, and the agent end to end."""

from __future__ import annotations

import base64
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from api.app import create_app
from api.context import ServiceContext
from nas.spaces import get_space
from predictors.latency.measure import GOVERNOR, environment
from predictors.latency.targets import get_target
from store.models import Agent, AgentTask, LatencyMeasurement
from tests.api_helpers import FakeClock, Users, make_context, make_users, serving, tiny_onnx
from tests.workers.flaky import flaky_server, free_port
from workers.agent import AGENT_RETRY, AgentClient, AgentError

SPACE = "ofa_mbv3_d234_e346_k357_32px"
MEASUREMENT = {
    "median_ms": 1.0, "p90_ms": 1.1, "p95_ms": 1.2, "mean_ms": 1.05, "cv": 0.05, "runs": 5, "attempts": 1,
    "noisy": False, "target": "board-ort", "input_shape": [1, 3, 16, 16], "environment": {},
}  # fmt: skip
FAST = {"warmup_runs": 1, "warmup_seconds": 0.0, "runs": 5, "retries": 0}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctx(tmp_path: Path, clock: FakeClock) -> Iterator[ServiceContext]:
    context = make_context(tmp_path, clock=clock)
    yield context
    context.db.dispose()


def setup_target(client: TestClient, users: Users) -> tuple[int, int, int]:
    """A target of A, two agents of A for it, one queued task; returns (agent 1, agent 2, task)."""
    assert client.post("/v1/targets", json={"name": "board-ort", "device": "arm"}, headers=users.a).status_code == 201
    ids = [
        client.post("/v1/agents", json={"name": n, "targets": ["board-ort"]}, headers=users.a).json()["id"]
        for n in ("a1", "a2")
    ]
    body = {"model_base64": base64.b64encode(tiny_onnx()).decode(), "settings": FAST}
    task = client.post("/v1/targets/board-ort/tasks", json=body, headers=users.a)
    assert task.status_code == 201 and task.json()["status"] == "QUEUED"
    return ids[0], ids[1], task.json()["id"]


def queue_task(ctx: ServiceContext, users: Users, *, create_target: bool = False) -> int:
    """Queue a measurement of a space's smallest subnet (tiny_onnx) on A's target board-ort; returns its id."""
    with TestClient(create_app(context=ctx)) as client:
        if create_target:
            assert client.post("/v1/targets", json={"name": "board-ort", "device": "arm"}, headers=users.a).is_success
        body = {
            "model_base64": base64.b64encode(tiny_onnx()).decode(), "settings": FAST, "space": SPACE,
            "arch": get_space(SPACE).min_arch(),
        }  # fmt: skip
        task = client.post("/v1/targets/board-ort/tasks", json=body, headers=users.a)
        assert task.status_code == 201
        return int(task.json()["id"])


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def task_status(ctx: ServiceContext, task_id: int) -> str:
    with ctx.db.reader() as s:
        row = s.get(AgentTask, task_id)
        assert row is not None
        return row.status


def test_expired_lease_requeues_and_the_old_holder_is_rejected(
    client: TestClient, users: Users, clock: FakeClock
) -> None:
    a1, a2, task_id = setup_target(client, users)
    claim = client.post(f"/v1/agents/{a1}/claim", json={"target": "board-ort", "lease_s": 30}, headers=users.a)
    assert claim.status_code == 200 and claim.json()["id"] == task_id
    assert client.post(f"/v1/agents/{a2}/claim", json={"target": "board-ort"}, headers=users.a).status_code == 204
    clock.advance(31)
    again = client.post(f"/v1/agents/{a2}/claim", json={"target": "board-ort"}, headers=users.a)
    assert again.status_code == 200 and again.json()["id"] == task_id
    late = client.post(f"/v1/agents/{a1}/tasks/{task_id}/result", json={"measurement": MEASUREMENT}, headers=users.a)
    assert late.status_code == 409 and late.json()["code"] == "not_held"
    assert client.get(f"/v1/agents/{a1}/tasks/{task_id}/model", headers=users.a).status_code == 409
    model = client.get(f"/v1/agents/{a2}/tasks/{task_id}/model", headers=users.a)
    assert model.content == tiny_onnx() and model.headers["x-content-sha256"] == again.json()["model_sha256"]
    done = client.post(f"/v1/agents/{a2}/tasks/{task_id}/result", json={"measurement": MEASUREMENT}, headers=users.a)
    assert done.status_code == 200 and done.json()["status"] == "DONE"
    twice = client.post(f"/v1/agents/{a2}/tasks/{task_id}/result", json={"error": "x"}, headers=users.a)
    assert twice.status_code == 409


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0, "fast"])
def test_non_finite_or_non_positive_latency_is_422(client: TestClient, users: Users, bad: object) -> None:
    a1, _, task_id = setup_target(client, users)
    client.post(f"/v1/agents/{a1}/claim", json={"target": "board-ort"}, headers=users.a)
    body = json.dumps({"measurement": {**MEASUREMENT, "p90_ms": bad}})  # NaN/Infinity as Python writes them
    r = client.post(
        f"/v1/agents/{a1}/tasks/{task_id}/result", content=body, headers={**users.a, "Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["field"] == "measurement.p90_ms"
    task = client.get("/v1/targets/board-ort/tasks", headers=users.a).json()["items"][0]
    assert task["id"] == task_id and task["status"] == "CLAIMED", "nothing was recorded"


def test_a_result_for_a_task_of_another_target_is_409_with_the_reason(client: TestClient, users: Users) -> None:
    a1, _, _ = setup_target(client, users)
    assert client.post("/v1/targets", json={"name": "other-ort", "device": "arm"}, headers=users.a).status_code == 201
    body = {"model_base64": base64.b64encode(tiny_onnx()).decode(), "settings": FAST}
    other = client.post("/v1/targets/other-ort/tasks", json=body, headers=users.a).json()["id"]
    r = client.post(f"/v1/agents/{a1}/tasks/{other}/result", json={"measurement": MEASUREMENT}, headers=users.a)
    assert r.status_code == 409 and r.json()["code"] == "wrong_target"
    assert "other-ort" in r.json()["message"] and "board-ort" in r.json()["message"]
    assert client.get(f"/v1/agents/{a1}/tasks/{other}/model", headers=users.a).json()["code"] == "wrong_target"
    tasks = client.get("/v1/targets/other-ort/tasks", headers=users.a).json()["items"]
    assert [t["status"] for t in tasks] == ["QUEUED"]


def test_another_users_token_gets_404_for_an_agent_and_its_task(client: TestClient, users: Users) -> None:
    a1, _, task_id = setup_target(client, users)
    assert client.post(f"/v1/agents/{a1}/claim", json={"target": "board-ort"}, headers=users.a).status_code == 200
    result = {"measurement": MEASUREMENT}
    for r in (
        client.post(f"/v1/agents/{a1}/tasks/{task_id}/result", json=result, headers=users.b),
        client.get(f"/v1/agents/{a1}/tasks/{task_id}/model", headers=users.b),
        client.post(f"/v1/agents/{a1}/claim", json={"target": "board-ort"}, headers=users.b),
    ):
        assert r.status_code == 404 and r.json()["field"] == "agent_id"
    assert client.post("/v1/targets", json={"name": "b-ort", "device": "arm"}, headers=users.b).status_code == 201
    b1 = client.post("/v1/agents", json={"name": "b1", "targets": ["b-ort"]}, headers=users.b).json()["id"]
    theirs = client.post(f"/v1/agents/{b1}/tasks/{task_id}/result", json=result, headers=users.b)
    assert theirs.status_code == 404 and f"task {task_id}" in theirs.json()["message"]
    assert [a["name"] for a in client.get("/v1/agents", headers=users.b).json()["items"]] == ["b1"]
    tasks = client.get("/v1/targets/board-ort/tasks", headers=users.a).json()["items"]
    assert [t["status"] for t in tasks] == ["CLAIMED"]


def test_an_agent_keeps_the_facts_of_its_last_registration(client: TestClient, users: Users) -> None:
    assert client.post("/v1/targets", json={"name": "board-ort", "device": "arm"}, headers=users.a).status_code == 201
    first = {"name": "lab", "targets": ["board-ort"], "environment": {"machine": "aarch64", "cpu_governor": "ondemand"}}
    agent = client.post("/v1/agents", json=first, headers=users.a).json()
    assert agent["environment"] == first["environment"]
    again = {**first, "environment": {"machine": "aarch64", "cpu_governor": "performance"}}
    assert client.post("/v1/agents", json=again, headers=users.a).json()["id"] == agent["id"]
    listed = client.get("/v1/agents", headers=users.a).json()["items"]
    assert [(a["id"], a["environment"]) for a in listed] == [(agent["id"], again["environment"])]


def test_the_environment_names_the_device_and_its_runtime() -> None:
    env = environment(get_target("cpu-ort"))
    assert env["machine"] == platform.machine() and env["logical_cores"] == os.cpu_count()
    assert env["runtime_version"] == ort.__version__ and env["providers"] == ort.get_available_providers()
    assert env["cpu_model"] and env["provider"] == "CPUExecutionProvider"
    readable = GOVERNOR.is_file() and os.access(GOVERNOR, os.R_OK)
    assert env["cpu_governor"] == (GOVERNOR.read_text().strip() if readable else None)


def test_importing_the_agent_loads_nothing_heavy() -> None:
    heavy = ["torch", "ray", "fastapi", "sqlalchemy", "pydantic", "pydantic_settings", "lightgbm", "sklearn", "onnx",
             "yaml", "store", "api", "cli"]  # fmt: skip
    code = f"import sys, workers.agent\nprint([m for m in {heavy!r} if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"


def test_unknown_target_is_404_and_other_users_cannot_touch_tasks(client: TestClient, users: Users) -> None:
    a1, _, _ = setup_target(client, users)
    assert client.post("/v1/agents", json={"name": "x", "targets": ["nope"]}, headers=users.a).status_code == 404
    assert client.post(f"/v1/agents/{a1}/claim", json={"target": "nope"}, headers=users.a).status_code == 404
    assert client.get("/v1/targets/board-ort", headers=users.b).status_code == 404
    assert client.post("/v1/agents", json={"name": "b", "targets": ["board-ort"]}, headers=users.b).status_code == 404
    assert client.post(f"/v1/agents/{a1}/claim", json={"target": "board-ort"}, headers=users.b).status_code == 404
    assert client.post("/v1/targets", json={"name": "cpu-ort"}, headers=users.a).status_code == 409


def test_ofa_yaml_table_import_and_model_quality(client: TestClient, users: Users) -> None:
    from predictors.latency.keys import table_layers

    client.post("/v1/targets", json={"name": "board-ort", "device": "arm"}, headers=users.a)
    keys = table_layers(get_space(SPACE).backbone, [32])
    text = "".join(f"{k}:\n  count: 10\n  mean: 0.5\n  std: 0.01\n" for k in keys)
    r = client.post("/v1/targets/board-ort/tables", json={"space": SPACE, "tables": {"32": text}}, headers=users.a)
    assert r.status_code == 201 and r.json()["kind"] == "imported"
    assert r.json()["quality"] == {"resolutions": [32], "entries": len(keys)}
    bad = client.post("/v1/targets/board-ort/tables", json={"space": SPACE, "tables": {"32": "bogus:\n  mean: 1\n"}},
                      headers=users.a)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["field"] == "tables" and "bogus" in bad.json()["message"]
    models = client.get("/v1/targets/board-ort/models", headers=users.a).json()
    assert [m["kind"] for m in models] == ["imported"]


def test_the_agent_waits_out_transient_answers_and_stops_at_a_refusal() -> None:
    retry = replace(AGENT_RETRY, backoff_s=0.01, max_backoff_s=0.05)
    with flaky_server() as flaky:
        client = AgentClient(f"http://127.0.0.1:{flaky.server_address[1]}", "t", retry=retry)
        flaky.script, flaky.done = [503, 0, 500, 429], 204
        assert client.claim(1, "board-ort") is None and flaky.seen == ["POST"] * 5, "a claim is safe to repeat"
        flaky.script, flaky.seen = [502, 404], []
        with pytest.raises(AgentError, match="404"):
            client.claim(1, "board-ort")
        assert len(flaky.seen) == 2
        client.close()


def test_agent_end_to_end_in_a_subprocess(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    users = make_users(ctx.db)
    token = users.a["Authorization"].removeprefix("Bearer ")
    try:
        with serving(ctx, free_port()) as url:
            task_id = queue_task(ctx, users, create_target=True)
            code = (
                "import sys\nfrom cli import main\n"
                f"rc = main(['agent', '--server', '{url}', '--token', '{token}', "
                "'--target', 'board-ort', '--max-tasks', '1', '--poll', '0.1', '--idle-exit', '60'])\n"
                "assert 'torch' not in sys.modules, 'the agent imported torch'\nsys.exit(rc)\n"
            )
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
            with ctx.db.reader() as s:
                row = s.get(AgentTask, task_id)
                assert row is not None and row.status == "DONE" and row.result is not None
                assert row.result["input_shape"] == [1, 3, 16, 16]
                assert row.result["environment"]["runtime"] == "onnxruntime"
                measured = s.scalars(select(LatencyMeasurement)).one()
                agent = s.scalars(select(Agent)).one()
            assert measured.latency_ms == row.result["median_ms"] > 0 and measured.source.startswith("agent:")
            assert measured.arch_key == get_space(SPACE).key(get_space(SPACE).min_arch())
            assert agent.environment["runtime_version"] == ort.__version__
            assert agent.environment["providers"] == ort.get_available_providers()
            bad = subprocess.run(
                [sys.executable, "-m", "workers.agent", "--server", url, "--token", token, "--target", "nope"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert bad.returncode == 1 and "404" in bad.stderr and "nope" in bad.stderr
    finally:
        ctx.db.dispose()


def test_the_agent_registers_again_after_the_service_restarts_without_it(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    users = make_users(ctx.db)
    port = free_port()
    first = queue_task(ctx, users, create_target=True)
    env = {**os.environ, "HWNAS_TOKEN": users.a["Authorization"].removeprefix("Bearer ")}
    command = [sys.executable, "-m", "workers.agent", "--server", f"http://127.0.0.1:{port}", "--target", "board-ort",
               "--name", "lab", "--max-tasks", "2", "--poll", "0.1", "--idle-exit", "120"]  # fmt: skip
    agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with serving(ctx, port):
            wait_for("the first task", lambda: task_status(ctx, first) == "DONE")
        with ctx.db.session() as s:  # the store loses its agents while the service is down (e.g. a restored backup)
            s.execute(delete(Agent))
        second = queue_task(ctx, users)
        with serving(ctx, port):
            out, _ = agent.communicate(timeout=120)
        assert agent.returncode == 0, out
    finally:
        agent.kill()
        ctx.db.dispose()
    assert "registering again" in out and task_status(ctx, second) == "DONE"
    assert "HTTP Request" not in out, "httpx's line per request stays out of the device's log"
    with ctx.db.reader() as s:
        agents = s.execute(select(Agent.name, Agent.environment)).all()
        assert s.scalar(select(func.count()).select_from(LatencyMeasurement)) == 2
    assert [(row.name, row.environment["runtime"]) for row in agents] == [("lab", "onnxruntime")]
