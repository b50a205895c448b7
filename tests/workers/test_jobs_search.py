"""The latency-table and search job kinds, for real: a tiny supernet on the demo set, cpu-ort tables, a search."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from nas.export import load_bundle
from nas.spaces import get_space
from predictors.latency import LookupTable, Target, list_targets, register_target
from store.artifacts import read_artifact
from store.models import Artifact, JobEvent, LatencyMeasurement, LatencyTable, Search, Subnet
from store.models import Target as TargetRow
from tests.workers.job_service import Service
from workers.executors import Executor, InProcessExecutor
from workers.kinds import JobKind, WorkContext, validate_params
from workers.kinds.base import EventSink
from workers.runner import Runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = "ofa_mbv3_d234_e346_k357_32px"
TINY = {"dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 64, "num_random": 1, "bn_recal_images": 64}
FAST = {"warmup_runs": 1, "warmup_seconds": 0.0, "runs": 3, "retries": 0}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("service"))
    trained = svc.run("train_supernet", {"config": TINY})
    assert trained.status.value == "SUCCEEDED", trained.error_message
    svc.supernet_id = trained.result["supernet_id"]
    yield svc
    svc.db.dispose()


@pytest.fixture(scope="module")
def table_job(service: Service) -> Any:
    job = service.run("build_latency_table", {"target": "cpu-ort", "space": SPACE, "samples": 4, "settings": FAST})
    assert job.status.value == "SUCCEEDED", job.error_message
    return job


def test_latency_table_job_measures_and_scores_the_table(service: Service, table_job: Any) -> None:
    with service.db.reader() as s:
        row = s.scalars(select(LatencyTable).where(LatencyTable.job_id == table_job.id)).one()
        artifact = s.get(Artifact, row.artifact_id)
        target = s.get(TargetRow, row.target_id)
        measured = s.scalars(select(LatencyMeasurement).where(LatencyMeasurement.target_id == row.target_id)).all()
    assert target is not None and target.name == "cpu-ort" and row.kind == "lut" and row.space == SPACE
    assert artifact is not None and artifact.kind == "latency_table"
    table = LookupTable.from_dict(json.loads(read_artifact(service.store, artifact)))
    space = get_space(SPACE)
    assert table.resolutions == list(space.resolutions)
    assert len(measured) == 4 and all(m.latency_ms > 0 for m in measured)
    predicted = table.predict([m.arch for m in measured])
    assert np.all(predicted > 0)
    assert row.quality is not None and row.quality["n"] == 4 and 0 <= row.quality["within_10"] <= 1
    assert row.quality["measured"] == [m.latency_ms for m in measured]  # the pairs a predicted-vs-measured plot draws
    assert row.quality["predicted"] == pytest.approx(predicted.tolist())


def accuracy_and_latency(service: Service, **options: Any) -> dict[str, Any]:
    """Parameters of a search for accurate and fast (cpu-ort) subnets of the module's supernet."""
    return {
        "supernet_id": service.supernet_id,
        "space": SPACE,
        "objectives": ["accuracy", "latency:cpu-ort"],
        "directions": {"accuracy": "max", "latency:cpu-ort": "min"},
        "targets": ["cpu-ort"],
        "measure": FAST,
        **options,
    }


def progress_events(service: Service, job_id: int) -> list[dict[str, Any]]:
    """The data of a job's progress events, in order."""
    with service.db.reader() as s:
        query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "progress").order_by(JobEvent.seq)
        return [event.data for event in s.scalars(query)]


def test_search_job_validates_and_exports_the_front(service: Service, table_job: Any) -> None:
    params = accuracy_and_latency(service, algorithm="nsga2", budget=300, predictor_samples=12, export_limit=3)
    job = service.run("search", params)
    assert job.status.value == "SUCCEEDED", job.error_message
    result = job.result
    assert result["n_evaluations"] == 300 and result["reason"] is None and result["hypervolume"] > 0
    assert result["predictor"]["samples"] == 12 and result["built_tables"] == []
    drift = result["drift"]["cpu-ort"]
    assert drift["reference"] == result["members"][0]["arch_key"] and drift["threshold"] == 0.15
    assert drift["reference_before_ms"] > 0 and drift["reference_after_ms"] > 0
    assert drift["remeasured"] == (abs(drift["first_relative_change"]) > 0.15)
    assert drift["flagged"] == (abs(drift["relative_change"]) > 0.15)
    with service.db.reader() as s:
        search = s.scalars(select(Search).where(Search.job_id == job.id)).one()
        subnets = s.scalars(select(Subnet).where(Subnet.search_id == search.id)).all()
        bundles = {sub.id: s.get(Artifact, sub.bundle_artifact_id) for sub in subnets}
    assert search.hypervolume == result["hypervolume"] and 1 <= len(subnets) <= 3
    assert sorted(sub.id for sub in subnets) == sorted(result["subnet_ids"])
    space = get_space(SPACE)
    for sub in subnets:
        assert sub.pareto_rank == 0 and sub.arch_key == space.key(sub.arch)
        assert set(sub.predicted or {}) == {"accuracy", "latency:cpu-ort"}
        assert sub.validated is not None and 0 <= sub.validated["accuracy"] <= 1
        assert sub.validated["latency:cpu-ort"] > 0
        bundle = bundles[sub.id]
        assert bundle is not None
        read_artifact(service.store, bundle)  # verifies the sha256
        assert load_bundle(service.store.path(bundle.key)).meta["arch"] == sub.arch


class BesideAnotherWorker(Executor):
    """Runs the work here, after another worker has run the next queued job to its end.

    Two searches overlap as they do on two workers: this one took its inputs before the other
    stored its results, and stores its own after.
    """

    def __init__(self, other: Runner) -> None:
        self.other = other

    def execute(
        self, kind: JobKind[Any], params: Any, inputs: dict[str, Any], ctx: WorkContext, on_event: EventSink,
        stop: threading.Event,
    ) -> dict[str, Any]:  # fmt: skip
        done = self.other.run_once()
        assert done is not None and done.status.value == "SUCCEEDED", done and done.error_message
        return InProcessExecutor().execute(kind, params, inputs, ctx, on_event, stop)


def test_searches_reuse_the_supernets_evaluations_and_concurrent_ones_lose_none(service: Service) -> None:
    base = {
        "supernet_id": service.supernet_id,
        "space": SPACE,
        "objectives": ["accuracy", "macs"],
        "directions": {"accuracy": "max", "macs": "min"},
        "algorithm": "random",
        "budget": 50,
        "predictor_samples": 10,
        "export_limit": 0,
    }
    first, second = {**base, "seed": 1}, {**base, "seed": 2}
    job_1, job_2 = service.submit("search", first), service.submit("search", second)
    runner = service.runner
    racing = Runner(service.queue, service.store, runner.runs_dir, executor=BesideAnotherWorker(runner),
                    lease_s=60, progress_interval_s=0)  # fmt: skip
    done_1 = racing.run_once()
    done_2 = service.queue.get(job_2.id)
    assert done_1 is not None and done_1.id == job_1.id and done_1.status.value == "SUCCEEDED", done_1
    results = [done_1.result or {}, done_2.result or {}]
    for result in results:  # neither saw the other's measurements: both measured all of theirs
        assert result["predictor"]["evaluated_now"] == 10 and result["evaluation_cache"] is not None
    for params, before in zip((first, second), results, strict=True):  # both stored theirs: the next measures none
        again = service.run("search", params)
        assert again.status.value == "SUCCEEDED", again.error_message
        predictor = again.result["predictor"]
        assert predictor["evaluated_now"] == 0 and again.result["evaluation_cache"] is None
        assert predictor["samples"] == 10 and predictor["held_out"] == before["predictor"]["held_out"]
        assert "predictor" not in {data["stage"] for data in progress_events(service, again.id)}  # none evaluated


def test_validation_measures_the_front_again_when_the_reference_subnet_drifts(service: Service, table_job: Any) -> None:
    strict = {**FAST, "cv_threshold": 0.0}  # no drift tolerated: two real measurements always differ a little
    params = accuracy_and_latency(
        service, algorithm="random", budget=100, seed=3, predictor_samples=10, export_limit=3, measure=strict
    )
    job = service.run("search", params)
    assert job.status.value == "SUCCEEDED", job.error_message
    result = job.result
    members, drift = result["members"], result["drift"]["cpu-ort"]
    before, after = drift["reference_before_ms"], drift["reference_after_ms"]
    assert drift["reference"] == members[0]["arch_key"] and drift["threshold"] == 0.0
    assert drift["relative_change"] == pytest.approx((after - before) / before) and drift["first_relative_change"] != 0
    assert drift["remeasured"] and drift["flagged"]  # measured again, and the second pass drifted too
    measured = [data["done"] for data in progress_events(service, job.id) if data.get("stage") == "measure"]
    assert measured == list(range(1, len(members) + 1)) * 2  # the whole front, twice
    assert all(m["sources"]["latency:cpu-ort"] == "measured" and m["validated"]["latency:cpu-ort"] > 0 for m in members)
    with service.api() as client:
        front = client.get(f"/v1/searches/{result['search_id']}/pareto", headers=service.headers)
    assert front.status_code == 200, front.text
    assert front.json()["measurement_drift"] == {"cpu-ort": drift}


def test_search_job_ends_before_the_predictor_when_the_table_proves_a_constraint_infeasible(
    service: Service, table_job: Any
) -> None:
    params = accuracy_and_latency(service, constraints={"latency:cpu-ort": 1e-6}, algorithm="evolution", budget=500)
    job = service.run("search", params)
    assert job.status.value == "SUCCEEDED", job.error_message
    result = job.result
    assert result["members"] == [] and result["n_evaluations"] == 0 and result["predictor"] is None
    with service.db.reader() as s:
        table_row = s.scalars(select(LatencyTable).where(LatencyTable.job_id == table_job.id)).one()
        table_file = s.get(Artifact, table_row.artifact_id)
    assert table_file is not None
    table = LookupTable.from_dict(json.loads(read_artifact(service.store, table_file)))
    stages = {data["stage"] for data in progress_events(service, job.id)}
    assert "predictor" not in stages and "search" not in stages  # no subnet was evaluated, none searched
    found = re.fullmatch(
        r"no subnet can meet latency:cpu-ort <= 1e-06: the smallest latency:cpu-ort in the space is (\S+); "
        r"the search did not run",
        result["reason"],
    )
    assert found is not None, result["reason"]
    space = get_space(SPACE)
    sampled = table.predict_matrix(space.sample_matrix(np.random.default_rng(0), 5000))
    assert 0 < float(found.group(1)) <= sampled.min() * 1.001  # the exact minimum: below any sample


def test_search_job_needs_a_table_for_a_remote_target(service: Service) -> None:
    spec = {"name": "test-rpi4-ort", "device": "rpi4", "threads": 4, "remote": True}
    if "test-rpi4-ort" not in list_targets():
        register_target(Target.from_dict(spec))
    params = {
        "supernet_id": service.supernet_id,
        "space": SPACE,
        "objectives": ["latency:test-rpi4-ort"],
        "directions": {"latency:test-rpi4-ort": "min"},
        "targets": ["test-rpi4-ort"],
        "algorithm": "random",
        "budget": 10,
    }
    job = service.run("search", params)
    assert (job.status.value, job.error_code) == ("FAILED", "no_latency_model")
    assert "test-rpi4-ort" in job.error_message


def test_search_params_are_checked_at_submission() -> None:
    base = {"supernet_id": 1, "space": SPACE, "directions": {}, "algorithm": "nsga2", "budget": 10}
    with pytest.raises(ValueError, match="latency:<one of"):
        validate_params("search", {**base, "objectives": ["latency:cpu-ort"], "targets": []})
    with pytest.raises(ValueError, match="budget"):
        validate_params("search", {**base, "objectives": ["macs"], "budget": 0})
    with pytest.raises(ValueError, match="unknown space"):
        validate_params("build_latency_table", {"target": "cpu-ort", "space": "nope"})
    with pytest.raises(ValueError, match="runs"):
        validate_params("build_latency_table", {"target": "cpu-ort", "space": SPACE, "settings": {"runs": 0}})
