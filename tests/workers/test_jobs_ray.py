"""Jobs whose work runs on Ray: a local Ray (progress, failure, cancellation) and a two-node cluster where only
one node advertises a target resource."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.artifacts import LocalArtifactStore
from store.db import Database, upgrade
from store.models import JobStatus
from store.queue import JobQueue
from workers.executors import RayExecutor
from workers.runner import Runner

ray = pytest.importorskip("ray")


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    upgrade(url)
    db = Database(url)
    yield JobQueue(db)
    db.dispose()


def make_runner(queue: JobQueue, tmp_path: Path) -> Runner:
    return Runner(
        queue, LocalArtifactStore(tmp_path / "artifacts"), tmp_path / "runs", executor=RayExecutor(poll_s=0.05),
        lease_s=30, poll_s=0.05, progress_interval_s=0,
    )  # fmt: skip


def test_jobs_run_on_a_local_ray(queue: JobQueue, tmp_path: Path, local_ray: None) -> None:
    runner = make_runner(queue, tmp_path)
    ok, _ = queue.submit("noop", {"steps": 3})
    bad, _ = queue.submit("noop", {"fail": "no latency table for target 'x'"})
    long, _ = queue.submit("noop", {"seconds": 300, "steps": 3000})
    done = runner.run_once()
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.result is not None
    assert done.result["node_id"] == ray.get_runtime_context().get_node_id(), "the work ran as a Ray task"
    assert done.result["pid"] != os.getpid()
    assert [e.data for e in queue.events(ok.id) if e.type == "progress"] == [
        {"step": 1, "steps": 3}, {"step": 2, "steps": 3}, {"step": 3, "steps": 3},
    ]  # fmt: skip
    failed = runner.run_once()
    assert failed is not None and failed.id == bad.id and failed.status is JobStatus.FAILED
    assert (failed.error_code, failed.error_message) == ("work_failed", "ValueError: no latency table for target 'x'")

    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(runner.run_once()))
    thread.start()
    deadline = time.monotonic() + 120
    while queue.get(long.id).progress is None:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    queue.cancel(long.id)
    thread.join(timeout=120)
    assert not thread.is_alive()
    cancelled = queue.get(long.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.progress is not None
    assert cancelled.progress["step"] < 3000, "the Ray task was stopped, not run to its end"


def test_work_needing_a_target_lands_on_the_node_that_has_it(queue: JobQueue, tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    target_node = cluster.add_node(num_cpus=1, resources={"target:cpu-ort": 1})
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        assert len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 2
        runner = make_runner(queue, tmp_path)
        ids = [queue.submit("noop", {"resources": {"target:cpu-ort": 1}})[0].id for _ in range(3)]
        plain, _ = queue.submit("noop", {})
        assert runner.serve(drain=True) == 4
        for job_id in ids:
            job = queue.get(job_id)
            assert job.status is JobStatus.SUCCEEDED and job.result is not None
            assert job.result["node_id"] == target_node.node_id
        assert queue.get(plain.id).status is JobStatus.SUCCEEDED
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
