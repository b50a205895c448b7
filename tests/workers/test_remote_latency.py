"""Latency models of a remote target built by its agents, and searches validated on its device.

A real service on 127.0.0.1, real agents (`workers.agent.run_agent`) in threads measuring with ONNX
Runtime, the real runner claiming the jobs: a ``build_latency_model`` job shared by two agents (one
of a third dies holding a task), a rerun that measures nothing twice, device failures named per
layer, no agent at all, and a search whose front is measured on the device.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from nas.spaces import get_space
from predictors.latency import MeasureSettings, Target
from predictors.latency.devices import DeviceMeasurementError
from predictors.latency.models import subnet_onnx
from store.models import Agent, AgentTask, LatencyMeasurement
from tests.api_helpers import serving
from tests.workers.flaky import free_port
from tests.workers.job_service import Service
from workers.agent import AgentClient, run_agent
from workers.agent_device import AgentDevice

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = "ofa_mbv3_d234_e346_k357_32px"
TINY = {"dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 64, "num_random": 1, "bn_recal_images": 64}
FAST = {"warmup_runs": 1, "warmup_seconds": 0.0, "runs": 3, "retries": 0}
BOARD = "board-ort"
MODEL_BODY = {"space": SPACE, "resolutions": [24], "samples": 12, "settings": FAST}


class StoppedError(Exception):
    """Ends an agent thread's loop."""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("remote"))
    with svc.api() as client:
        created = client.post("/v1/targets", json={"name": BOARD, "device": "arm"}, headers=svc.headers)
        assert created.status_code == 201, created.text
    yield svc
    svc.db.dispose()


@pytest.fixture(scope="module")
def url(service: Service) -> Iterator[str]:
    with serving(service.context(), free_port()) as base:
        yield base


@contextmanager
def agents(url: str, service: Service, *names: str) -> Iterator[None]:
    """Agents of `BOARD` named `names`, serving tasks in threads for the duration of the block."""
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise StoppedError

    def serve(name: str) -> None:
        client = AgentClient(url, service.headers["Authorization"].split()[1])
        try:
            run_agent(client, BOARD, name=name, poll_s=0.05, sleep=sleep)
        except StoppedError:
            pass
        finally:
            client.close()

    threads = [threading.Thread(target=serve, args=(name,), daemon=True) for name in names]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def dying_agent(url: str, service: Service) -> threading.Thread:
    """An agent that claims one task of `BOARD` under a 1 s lease and vanishes without a result."""
    client = AgentClient(url, service.headers["Authorization"].split()[1])
    agent_id = client.register("dies", client.target(BOARD))

    def claim_one() -> None:
        try:
            while client.claim(agent_id, BOARD, lease_s=1.0) is None:
                threading.Event().wait(0.02)
        finally:
            client.close()

    thread = threading.Thread(target=claim_one, daemon=True)
    thread.start()
    return thread


def job_tasks(service: Service, job_id: int) -> list[AgentTask]:
    with service.db.reader() as s:
        return list(s.scalars(select(AgentTask).where(AgentTask.job_id == job_id)))


def agent_names(service: Service) -> dict[int, str]:
    with service.db.reader() as s:
        return {a.id: a.name for a in s.scalars(select(Agent))}


def test_two_agents_build_a_remote_targets_models_and_a_dead_agents_task_is_measured_by_another(
    service: Service, url: str
) -> None:
    with service.api() as client:
        queued = client.post(f"/v1/targets/{BOARD}/models", json=MODEL_BODY, headers=service.headers)
    assert queued.status_code == 202, queued.text
    assert queued.headers["Location"] == f"/v1/jobs/{queued.json()['id']}"
    dying = dying_agent(url, service)
    with agents(url, service, "board-1", "board-2"):
        job = service.runner.run_once()
    dying.join(timeout=10)
    assert job is not None and job.id == queued.json()["id"]
    assert job.status.value == "SUCCEEDED", job.error_message
    result: dict[str, Any] = job.result or {}
    assert result["entries"] > 0 and len(result["samples"]) == 12
    assert result["quality"]["n"] == 12 and len(result["quality"]["measured"]) == 12
    assert result["learned_quality"]["n"] == 12 and 0 < result["learned_quality"]["mape"] < 100
    tasks = job_tasks(service, job.id)
    keys = [t.payload["key"] for t in tasks]
    assert len(keys) == len(set(keys)) == result["entries"] + 12  # every layer and subnet queued once
    assert all(t.status == "DONE" for t in tasks)
    names = agent_names(service)
    by_agent = {names[t.agent_id] for t in tasks if t.agent_id is not None}
    assert {"board-1", "board-2"} <= by_agent and "dies" not in by_agent  # the dead agent's task went to another
    with service.api() as client:
        models = client.get(f"/v1/targets/{BOARD}/models", headers=service.headers).json()
    assert {m["kind"] for m in models} == {"lut", "learned"}
    with service.db.reader() as s:
        measured = s.scalars(select(LatencyMeasurement).where(LatencyMeasurement.source == f"job {job.id}")).all()
    assert sorted(m.arch_key for m in measured) == sorted(sample["arch_key"] for sample in result["samples"])


def test_a_rerun_of_the_job_keeps_the_results_it_got_and_measures_nothing_twice(service: Service, url: str) -> None:
    job = service.run("noop", {})  # a finished job whose id the tasks carry
    space = get_space(SPACE)
    models = [subnet_onnx(space, arch) for arch in space.sample(0, 4)]
    with service.db.reader() as s:
        target_id = s.scalars(select(AgentTask.target_id)).first()
    assert target_id is not None
    board = Target(BOARD, device="arm", remote=True)
    settings = MeasureSettings.from_dict(FAST)

    def died_after_two() -> None:
        if sum(t.status == "DONE" for t in job_tasks(service, job.id)) >= 2:
            raise StoppedError  # the worker dies with two results in

    first = AgentDevice(service.db, service.store, board, target_id, job_id=job.id, user_id=service.user_id,
                        poll_s=0.05, check=died_after_two)  # fmt: skip
    client = AgentClient(url, service.headers["Authorization"].split()[1])
    counted = threading.Thread(target=run_agent, args=(client, BOARD), kwargs={"max_tasks": 2, "poll_s": 0.05})
    counted.start()
    with pytest.raises(StoppedError):
        first.measure(models, settings, label="e2e")
    counted.join(timeout=30)
    before = {t.id: (t.status, t.finished_at) for t in job_tasks(service, job.id)}
    assert sorted(status for status, _ in before.values()) == ["DONE", "DONE", "QUEUED", "QUEUED"]
    second = AgentDevice(service.db, service.store, board, target_id, job_id=job.id, user_id=service.user_id,
                         poll_s=0.05)  # fmt: skip
    with agents(url, service, "board-1"):
        measured = second.measure(models, settings, label="e2e")
    after = job_tasks(service, job.id)
    assert len(measured) == 4 and all(m.median_ms > 0 for m in measured)
    assert {t.id for t in after} == set(before)  # no task queued again
    for task in after:
        if before[task.id][0] == "DONE":
            assert task.finished_at == before[task.id][1]  # kept, not measured again


def test_a_remote_model_job_run_as_a_ray_task_reaches_the_agents_through_the_database(
    service: Service, url: str, local_ray: None
) -> None:
    from workers.executors import RayExecutor
    from workers.runner import Runner

    job = service.submit("build_latency_model", {"target": BOARD, **MODEL_BODY, "samples": 10})
    runner = Runner(service.queue, service.store, service.settings.runs_path, executor=RayExecutor(), lease_s=60,
                    progress_interval_s=0)  # fmt: skip
    with agents(url, service, "board-1"):
        done = runner.run_once()
    assert done is not None and done.id == job.id
    assert done.status.value == "SUCCEEDED", done.error_message
    assert (done.result or {})["learned_quality"]["n"] == 10
    assert {t.status for t in job_tasks(service, job.id)} == {"DONE"}


def test_a_model_job_reports_the_layers_the_device_cannot_run(service: Service, url: str) -> None:
    job = service.submit("build_latency_model", {"target": BOARD, **MODEL_BODY, "learned": False, "samples": 0})
    client = AgentClient(url, service.headers["Authorization"].split()[1])
    agent_id = client.register("old-ort", client.target(BOARD))
    stop = threading.Event()

    def refuse_all() -> None:
        while not stop.is_set():
            task = client.claim(agent_id, BOARD)
            if task is None:
                stop.wait(0.02)
                continue
            client.post_result(agent_id, task["id"], {"error": "ONNXRuntimeError: Could not find an implementation"})

    thread = threading.Thread(target=refuse_all, daemon=True)
    thread.start()
    try:
        done = service.runner.run_once()
    finally:
        stop.set()
        thread.join(timeout=10)
        client.close()
    assert done is not None and done.id == job.id
    assert (done.status.value, done.error_code) == ("FAILED", "measurement_failed")
    assert done.error_message is not None
    assert BOARD in done.error_message and "layer Conv-input:24x24x1-output:12x12x16" in done.error_message
    assert "Could not find an implementation" in done.error_message


def test_a_model_job_without_agents_fails_after_its_wait_and_leaves_no_task_waiting(service: Service) -> None:
    job = service.submit("build_latency_model", {"target": BOARD, **MODEL_BODY, "wait_s": 0.3})
    done = service.runner.run_once()
    assert done is not None and done.id == job.id
    assert (done.status.value, done.error_code) == ("FAILED", "no_agent")
    assert done.error_message is not None
    assert f"--target {BOARD}" in done.error_message
    assert {t.status for t in job_tasks(service, job.id)} == {"FAILED"}


def test_model_requests_are_checked_at_submission(service: Service) -> None:
    with service.api() as client:

        def post(name: str, body: dict[str, Any]) -> Any:
            return client.post(f"/v1/targets/{name}/models", json=body, headers=service.headers)

        assert post("nope", {"space": SPACE}).status_code == 404
        for body, field in (
            ({"space": "nope"}, "space"),
            ({"space": SPACE, "table": False, "learned": False}, "nothing to build"),
            ({"space": SPACE, "samples": 5}, "at least 10"),
            ({"space": SPACE, "resolutions": [7]}, "7"),
            ({"space": SPACE, "settings": {"runs": 0}}, "runs"),
            ({"space": SPACE, "target": BOARD}, "target"),
        ):
            answer = post(BOARD, body)
            assert answer.status_code == 422 and field in answer.text, (body, answer.text)


def test_a_search_on_the_remote_target_uses_its_learned_model_and_validates_the_front_on_the_device(
    service: Service, url: str
) -> None:
    trained = service.run("train_supernet", {"config": TINY})
    assert trained.status.value == "SUCCEEDED", trained.error_message
    built = service.submit("build_latency_model", {"target": BOARD, **MODEL_BODY, "resolutions": None})
    params: dict[str, Any] = {
        "supernet_id": (trained.result or {})["supernet_id"], "space": SPACE,
        "objectives": ["accuracy", f"latency:{BOARD}"], "targets": [BOARD], "algorithm": "nsga2", "budget": 200,
        "predictor_samples": 10, "export_limit": 2, "measure": FAST,
    }  # fmt: skip
    with agents(url, service, "board-1", "board-2"):
        assert service.runner.run_once().id == built.id  # type: ignore[union-attr]
        job = service.run("search", params)
    assert job.status.value == "SUCCEEDED", job.error_message
    result: dict[str, Any] = job.result or {}
    members = result["members"]
    assert members and all(m["sources"][f"latency:{BOARD}"] == "measured" for m in members)
    drift = result["drift"][BOARD]
    assert drift["reference"] == members[0]["arch_key"] and drift["reference_before_ms"] > 0
    tasks = job_tasks(service, job.id)
    assert tasks and all(t.status == "DONE" for t in tasks)
    assert len(tasks) == (len(members) + 2) * (2 if drift["remeasured"] else 1)  # the members between two references
    for member in members:  # the value shown is the device's measurement of that member's ONNX file
        assert member["validated"][f"latency:{BOARD}"] > 0


def test_local_device_names_the_models_it_cannot_run(tmp_path: Path) -> None:
    from predictors.latency.devices import LocalDevice

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(DeviceMeasurementError, match="model 0") as caught:
        LocalDevice(Target("cpu-here")).measure([bad], MeasureSettings.from_dict(FAST), label="x")
    assert list(caught.value.failures) == ["model 0"]
