"""``POST /v1/supernets`` with workers: malformed values are 422s, requests the reported cluster cannot place are 409s.

The job workers' capacity reports are written as a runner writes them (`workers.capacity.publish`);
a refused request leaves no job behind.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.context import ServiceContext
from store.models import ClusterReport, Job
from tests.api_helpers import Users
from workers.capacity import FRESH_S, Capacity, publish

CONFIG = {"space": "ofa_mbv3_d234_e346_k357_32px", "dataset": "demo", "epochs": 1}
TWO_CPUS = Capacity(cpus=2, gpus=0, node_cpus=2, node_gpus=0, nodes=1)


def report(ctx: ServiceContext, capacity: Capacity, worker: str = "w1", age_s: float = 0) -> None:
    with ctx.db.session() as s:
        publish(s, worker, capacity)
    if age_s:
        with ctx.db.session() as s:
            row = s.scalars(select(ClusterReport).where(ClusterReport.worker_id == worker)).one()
            row.reported_at -= dt.timedelta(seconds=age_s)


def jobs(ctx: ServiceContext) -> int:
    with ctx.db.reader() as s:
        return s.scalar(select(func.count()).select_from(Job)) or 0


def post(client: TestClient, users: Users, **fields: Any) -> Any:
    return client.post("/v1/supernets", json={"config": CONFIG, **fields}, headers=users.a)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": "2"}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"workers": 5000}, "workers"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:0"}, "device"),
        ({"cpus_per_worker": 0}, "cpus_per_worker"),
        ({"cpus_per_worker": -1}, "cpus_per_worker"),
        ({"cpus_per_worker": "1"}, "cpus_per_worker"),
        ({"gpus_per_worker": 2}, "gpus_per_worker"),
    ],
)
def test_malformed_workers_are_422_and_queue_nothing(
    client: TestClient, users: Users, ctx: ServiceContext, fields: dict[str, Any], field: str
) -> None:
    r = post(client, users, **fields)
    assert r.status_code == 422, r.text
    assert (r.json()["code"], r.json()["field"]) == ("validation_error", field)
    assert jobs(ctx) == 0


def test_without_a_report_cpu_workers_are_queued_and_cuda_is_409(
    client: TestClient, users: Users, ctx: ServiceContext
) -> None:
    r = post(client, users, device="cuda")
    assert r.status_code == 409 and r.json()["code"] == "no_gpu" and r.json()["field"] == "device"
    assert "no job worker has reported a Ray cluster with a GPU" in r.json()["message"]
    assert jobs(ctx) == 0
    r = post(client, users, workers=8, cpus_per_worker=2)
    assert r.status_code == 202, r.text
    with ctx.db.reader() as s:
        params = s.get(Job, r.json()["id"]).params  # type: ignore[union-attr]
    assert (params["workers"], params["device"], params["cpus_per_worker"]) == (8, "cpu", 2.0)
    assert "workers" not in params["config"], "the workers are the job's, not the training configuration's"


def test_requests_the_reported_cluster_cannot_place_are_409(
    client: TestClient, users: Users, ctx: ServiceContext
) -> None:
    report(ctx, TWO_CPUS)
    r = post(client, users, device="cuda")
    assert r.status_code == 409 and r.json()["code"] == "no_gpu", r.text
    assert r.json()["message"].startswith(
        "device=cuda asks for 1 GPU worker(s), but the Ray cluster has 2 CPU(s), 0 GPU(s)"
    )
    assert "reported by job worker w1" in r.json()["message"]
    r = post(client, users, workers=3)
    assert r.status_code == 409 and (r.json()["code"], r.json()["field"]) == ("insufficient_resources", "workers")
    assert r.json()["message"].startswith(
        "workers=3 with 1 CPU(s) each needs 3 CPU(s) in all, but the Ray cluster has 2 CPU(s)"
    )
    r = post(client, users, workers=1, cpus_per_worker=4)
    assert r.status_code == 409 and r.json()["code"] == "insufficient_resources"
    assert "no node is that large" in r.json()["message"]
    assert jobs(ctx) == 0

    assert post(client, users, workers=2).status_code == 202
    assert post(client, users, workers=4, cpus_per_worker=0.5).status_code == 202


def test_gpu_requests_fit_a_reported_gpu_cluster(client: TestClient, users: Users, ctx: ServiceContext) -> None:
    report(ctx, TWO_CPUS, "cpu-only")
    report(ctx, Capacity(cpus=16, gpus=2, node_cpus=8, node_gpus=1, nodes=2), "gpus")
    assert post(client, users, device="cuda", workers=2).status_code == 202
    r = post(client, users, device="cuda", workers=3)
    assert r.status_code == 409 and r.json()["code"] == "insufficient_resources"
    assert jobs(ctx) == 1


def test_stale_reports_are_ignored(client: TestClient, users: Users, ctx: ServiceContext) -> None:
    report(ctx, Capacity(cpus=8, gpus=1, node_cpus=8, node_gpus=1, nodes=1), age_s=FRESH_S + 1)
    r = post(client, users, device="cuda")
    assert r.status_code == 409 and r.json()["code"] == "no_gpu"
    report(ctx, TWO_CPUS, age_s=1)  # the same worker's report, refreshed
    assert post(client, users, workers=3).status_code == 409
