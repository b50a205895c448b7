"""Supernet training jobs on Ray Train workers through the REST API, on a local Ray with 2 CPUs.

A job of two CPU workers loses one of them (SIGKILL) after its first epoch's checkpoint and still
succeeds: Ray Train restarts the workers, they resume from that checkpoint, and the result and the
events say so. A request the cluster cannot place fails at once, with the reason, instead of
waiting in Ray's queue; a GPU job runs on a machine that has a GPU.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from store.models import ClusterReport, Job, JobStatus, Supernet
from tests.workers.job_service import Service
from workers.executors import RayExecutor
from workers.runner import Runner

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"dataset": "demo", "epochs": 2, "batch_size": 32, "train_images": 128, "num_random": 1, "bn_recal_images": 64}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, local_ray: None) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("train-workers"))
    yield svc
    svc.db.dispose()


def ray_runner(service: Service) -> Runner:
    """A runner whose jobs run as Ray tasks on the module's local Ray; it has reported the cluster."""
    runner = Runner(
        service.queue, service.store, service.settings.runs_path, executor=RayExecutor(poll_s=0.05), lease_s=60,
        progress_interval_s=0, keep_run_dirs=True,
    )  # fmt: skip
    assert runner.report_capacity()
    return runner


def _parent(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])


def train_worker_pids() -> list[int]:
    """Ray Train's worker processes (titled ``ray::RayTrainWorker...``) of this test's Ray, whose raylet we started."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
                if title.startswith(b"ray::RayTrainWorker") and _parent(_parent(int(entry.name))) == os.getpid():
                    pids.append(int(entry.name))
            except (OSError, StopIteration):
                continue
    return pids


def wait_for(condition: Any, what: str, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def test_a_serving_runner_reports_its_cluster(service: Service) -> None:
    runner = Runner(
        service.queue, service.store, service.settings.runs_path, executor=RayExecutor(), poll_s=0.05,
        capacity_interval_s=0.05,
    )  # fmt: skip
    assert runner.serve(drain=True) == 0
    with service.db.reader() as s:
        first = s.scalars(select(ClusterReport).where(ClusterReport.worker_id == runner.worker_id)).one()
    assert (first.cpus, first.gpus, first.node_cpus, first.nodes) == (2, 0, 2, 1)
    stop = threading.Event()
    thread = threading.Thread(target=runner.serve, kwargs={"stop": stop})
    thread.start()

    def refreshed() -> bool:
        with service.db.reader() as s:
            row = s.scalars(select(ClusterReport).where(ClusterReport.worker_id == runner.worker_id)).one()
        return row.reported_at > first.reported_at

    try:
        wait_for(refreshed, "a second report")
    finally:
        stop.set()
        thread.join()


def killed_job(service: Service, body: dict[str, Any]) -> tuple[Job, list[dict[str, Any]]]:
    """POST `body` and run the job on Ray, killing a Ray Train worker after the first epoch's checkpoint.

    Returns:
        The job at its end, and the history of the checkpoint that was there before the kill.
    """
    runner = ray_runner(service)
    with service.api() as client:
        response = client.post("/v1/supernets", json=body, headers=service.headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    outcome: list[Job | None] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run_once()))
    thread.start()
    state = service.settings.runs_path / f"job-{job_id}" / "train" / "checkpoint" / "state.json"
    wait_for(state.is_file, "the first epoch's checkpoint")
    before = json.loads(state.read_text())["state"]["history"]
    victim = wait_for(train_worker_pids, "the Ray Train workers")[-1]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    (job,) = outcome
    assert job is not None and job.status is JobStatus.SUCCEEDED, job and job.error_message
    return job, before


def test_a_rest_job_on_two_cpu_workers_survives_a_dead_worker(service: Service) -> None:
    job, before = killed_job(service, {"name": "two", "config": TINY, "workers": 2})
    job_id = job.id
    result = job.result
    assert result is not None and result["epochs"] == 2 and result["resumed_after_epochs"] == 0
    assert result["restarts"] >= 1 and result["resumed_at"][0] >= len(before) >= 1
    # the epochs before the kill were not trained again: their records are those of the checkpoint then
    assert result["history"][: len(before)] == before
    events = service.queue.events(job_id)
    logs = [e.data["message"] for e in events if e.type == "log"]
    assert any("restarted from the checkpoint after epoch" in m for m in logs), logs
    progress = [e.data for e in events if e.type == "progress"]
    assert progress and {p["epoch"] for p in progress} == {0, 1}
    with service.db.reader() as s:
        supernet = s.scalars(select(Supernet).where(Supernet.job_id == job_id)).one()
    assert supernet.metrics is not None and supernet.metrics["epochs"] == 2
    assert supernet.checkpoint is not None and "weights.safetensors" in supernet.checkpoint


@pytest.mark.slow
def test_a_resumed_job_ends_with_the_weights_of_an_uninterrupted_run(service: Service, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from nas.train import TrainConfig
    from workers.ray_tasks.train import train_supernet_on_ray

    job, _ = killed_job(service, {"config": TINY, "workers": 2})
    assert job.result is not None and job.result["restarts"] >= 1
    straight = train_supernet_on_ray(TrainConfig.model_validate(job.params["config"]), tmp_path, num_workers=2)
    assert [h["loss"] for h in job.result["history"]] == [h["loss"] for h in straight.history]
    resumed = load_file(service.settings.runs_path / f"job-{job.id}" / "train" / "checkpoint" / "weights.safetensors")
    expected = load_file(tmp_path / "checkpoint" / "weights.safetensors")
    assert resumed.keys() == expected.keys()
    assert all(resumed[k].equal(expected[k]) for k in expected), "bit-exact resume"


def test_a_job_the_cluster_cannot_place_fails_at_once(service: Service) -> None:
    runner = ray_runner(service)
    with service.db.session() as s:  # the API's reports let it through (a third CPU that has since gone)
        s.execute(update(ClusterReport).values(cpus=3))
    with service.api() as client:
        response = client.post("/v1/supernets", json={"config": TINY, "workers": 3}, headers=service.headers)
    assert response.status_code == 202, response.text
    started = time.monotonic()
    job = runner.run_once()
    assert job is not None and (job.status, job.error_code) == (JobStatus.FAILED, "insufficient_resources")
    assert job.error_message is not None
    assert "workers=3 with 1 CPU(s) each needs 3 CPU(s) in all, but the Ray cluster has 2 CPU(s)" in job.error_message
    assert time.monotonic() - started < 60, "it failed, not waited for CPUs"
    # a GPU job the API did not check (queued directly) fails the same way on this cluster without GPUs
    service.submit("train_supernet", {"config": TINY, "device": "cuda"})
    job = runner.run_once()
    assert job is not None and (job.status, job.error_code) == (JobStatus.FAILED, "no_gpu")
    assert job.error_message is not None and job.error_message.startswith(
        "device=cuda asks for 1 GPU worker(s), but the Ray cluster has 2 CPU(s), 0 GPU(s) on 1 node(s)"
    )


@pytest.mark.cuda
def test_a_rest_job_trains_on_a_gpu_worker(service: Service) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    runner = ray_runner(service)
    with service.api() as client:
        response = client.post("/v1/supernets", json={"config": TINY, "device": "cuda"}, headers=service.headers)
    assert response.status_code == 202, response.text
    job = runner.run_once()
    assert job is not None and job.status is JobStatus.SUCCEEDED, job and job.error_message
    assert job.result is not None and job.result["epochs"] == 2 and job.result["restarts"] == 0
    assert all(math.isfinite(h["loss"]) for h in job.result["history"])
    logs = [e.data["message"] for e in service.queue.events(job.id) if e.type == "log"]
    assert any("1 cuda worker(s)" in m for m in logs), logs
