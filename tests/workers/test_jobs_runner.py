"""The job runner, in-process: outcomes, cancellation, a lost lease, dropped database connections (PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from store.artifacts import LocalArtifactStore
from store.db import Database, utcnow
from store.models import JobStatus, User
from store.queue import JobQueue, Lease
from workers.kinds import JobKind, WorkContext, register_job_kind
from workers.runner import Runner


class HalfWrittenParams(BaseModel):
    users: int


@register_job_kind("test_half_written")
class HalfWrittenJob(JobKind[HalfWrittenParams]):
    """Persists some rows, then fails: none of them may remain."""

    Params = HalfWrittenParams

    def run(self, params: HalfWrittenParams, inputs: dict[str, Any], ctx: WorkContext) -> dict[str, Any]:
        return {"users": params.users}

    def persist(
        self, session: Session, lease: Lease, params: HalfWrittenParams, result: dict[str, Any]
    ) -> dict[str, Any]:
        session.add_all([User(name=f"u{i}") for i in range(params.users)])
        session.flush()
        raise RuntimeError("disk full while registering the results")


@pytest.fixture
def queue(store_db: Database) -> JobQueue:
    return JobQueue(store_db)


def make_runner(queue: JobQueue, tmp_path: Path, **kwargs: object) -> Runner:
    options: dict[str, object] = {"lease_s": 30.0, "poll_s": 0.05, "progress_interval_s": 0.0, **kwargs}
    return Runner(queue, LocalArtifactStore(tmp_path / "artifacts"), tmp_path / "runs", **options)  # type: ignore[arg-type]


def wait_for(predicate: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_job_runs_to_success_with_its_progress(queue: JobQueue, tmp_path: Path) -> None:
    job, _ = queue.submit("noop", {"steps": 3})
    runner = make_runner(queue, tmp_path)
    done = runner.run_once()
    assert done is not None and done.id == job.id and done.status is JobStatus.SUCCEEDED
    assert done.result is not None and done.result["attempt"] == 1 and done.result["node_id"] is None
    assert done.progress == {"step": 3, "steps": 3}
    events = queue.events(job.id)
    assert [e.type for e in events] == ["status", "status", "progress", "progress", "progress", "status"]
    assert [e.seq for e in events] == list(range(1, 7))
    assert runner.run_once() is None
    assert not (tmp_path / "runs" / f"job-{job.id}").exists(), "a succeeded job's run dir is removed"


def test_failures_are_recorded_with_a_code(queue: JobQueue, tmp_path: Path) -> None:
    failing, _ = queue.submit("noop", {"fail": "the model is too large"})
    unknown, _ = queue.submit("no_such_kind", {})
    invalid, _ = queue.submit("noop", {"seconds": -1})
    runner = make_runner(queue, tmp_path)
    assert runner.serve(drain=True) == 3
    job = queue.get(failing.id)
    assert (job.status, job.error_code) == (JobStatus.FAILED, "work_failed")
    assert job.error_message == "ValueError: the model is too large"
    job = queue.get(unknown.id)
    assert job.error_code == "invalid_job" and "unknown job kind 'no_such_kind'" in (job.error_message or "")
    job = queue.get(invalid.id)
    assert job.error_code == "invalid_job" and "seconds" in (job.error_message or "")


def test_heartbeats_keep_a_job_longer_than_its_lease(queue: JobQueue, store_db: Database, tmp_path: Path) -> None:
    job, _ = queue.submit("noop", {"seconds": 2.5, "steps": 5})
    runner = make_runner(queue, tmp_path, lease_s=0.6)
    thread = threading.Thread(target=runner.run_once)
    thread.start()
    wait_for(lambda: queue.get(job.id).status is JobStatus.RUNNING)
    rival = JobQueue(store_db)
    stolen = []
    while thread.is_alive():
        if (lease := rival.claim("rival", lease_s=30)) is not None:
            stolen.append(lease)
        time.sleep(0.05)
    thread.join()
    assert stolen == []
    done = queue.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1


def test_results_are_never_half_written(queue: JobQueue, store_db: Database, tmp_path: Path) -> None:
    job, _ = queue.submit("test_half_written", {"users": 3})
    failed = make_runner(queue, tmp_path).run_once()
    assert failed is not None and failed.id == job.id and failed.status is JobStatus.FAILED
    assert (failed.error_code, failed.result) == ("persist_failed", None)
    assert failed.error_message == "RuntimeError: disk full while registering the results"
    with store_db.reader() as s:
        assert s.scalars(select(User)).all() == []


def test_cancelling_a_running_job_stops_it_promptly(queue: JobQueue, tmp_path: Path) -> None:
    job, _ = queue.submit("noop", {"seconds": 120, "steps": 1200})
    runner = make_runner(queue, tmp_path, lease_s=30.0, cancel_check_s=0.1)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(runner.run_once()))
    thread.start()
    wait_for(lambda: queue.get(job.id).progress is not None)
    assert queue.cancel(job.id) is JobStatus.CANCELLING
    thread.join(timeout=60)
    assert not thread.is_alive()
    final = queue.get(job.id)
    assert final.status is JobStatus.CANCELLED and final.progress is not None
    assert final.progress["step"] < 1200
    assert [h.to_status.value for h in queue.history(job.id)] == ["QUEUED", "RUNNING", "CANCELLING", "CANCELLED"]


def test_a_worker_that_lost_its_lease_writes_nothing(queue: JobQueue, store_db: Database, tmp_path: Path) -> None:
    job, _ = queue.submit("noop", {"seconds": 60, "steps": 600})
    slow = make_runner(queue, tmp_path, lease_s=30.0, worker_id="slow")
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(slow.run_once()))
    thread.start()
    wait_for(lambda: queue.get(job.id).progress is not None)
    # Another worker whose clock is past the slow worker's lease takes the job over.
    future = JobQueue(store_db, clock=lambda: utcnow() + dt.timedelta(seconds=31))
    lease = future.claim("fast", lease_s=600)
    assert lease is not None and lease.job_id == job.id and lease.attempt == 2
    thread.join(timeout=60)
    assert outcome == [None], "the slow worker stops and records nothing"
    future.complete(lease, {"by": "fast"})
    final = queue.get(job.id)
    assert final.status is JobStatus.SUCCEEDED and final.result == {"by": "fast"} and final.lease_owner == "fast"
    assert [(h.to_status.value, h.worker) for h in queue.history(job.id)] == [
        ("QUEUED", None), ("RUNNING", "slow"), ("RUNNING", "fast"), ("SUCCEEDED", "fast"),
    ]  # fmt: skip


@pytest.mark.postgres
def test_dropped_database_connections_lose_nothing(pg_url: str, pg_admin_url: str, tmp_path: Path) -> None:
    """Every connection to the test database is terminated, repeatedly, while jobs run; the worker reconnects."""
    from store.db import upgrade

    upgrade(pg_url)
    db = Database(pg_url)
    queue = JobQueue(db)
    ids = [queue.submit("noop", {"seconds": 1.5, "steps": 15})[0].id for _ in range(3)]
    runner = make_runner(queue, tmp_path, lease_s=3.0)
    stop = threading.Event()
    thread = threading.Thread(target=runner.serve, kwargs={"stop": stop})
    thread.start()
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    name = pg_url.rsplit("/", 1)[1]
    killed = 0
    try:
        with admin.connect() as conn:
            deadline = time.monotonic() + 120
            while not all(queue.get(i).status.terminal for i in ids):
                assert time.monotonic() < deadline, "the jobs did not finish"
                killed += conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                ).scalar_one()
                time.sleep(0.4)
    finally:
        stop.set()
        thread.join(timeout=60)
        admin.dispose()
    assert killed > 0
    for job_id in ids:
        job = queue.get(job_id)
        assert (job.status, job.error_message, job.attempts) == (JobStatus.SUCCEEDED, None, 1)
        statuses = [h.to_status.value for h in queue.history(job_id)]
        assert statuses == ["QUEUED", "RUNNING", "SUCCEEDED"]
        seqs = [e.seq for e in queue.events(job_id)]
        assert seqs == list(range(1, len(seqs) + 1))
    db.dispose()


def test_hwnas_worker_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli import main

    monkeypatch.setenv("HWNAS_HOME", str(tmp_path))
    monkeypatch.delenv("HWNAS_DATABASE_URL", raising=False)
    assert main(["worker", "--once", "--in-process"]) == 1
    err = capsys.readouterr().err
    assert "schema revision None" in err and "--migrate" in err
    assert main(["worker", "--drain", "--in-process", "--migrate", "--worker-id", "cli"]) == 0
    assert "worker cli: ran 0 job(s)" in capsys.readouterr().out
    db = Database(f"sqlite:///{tmp_path / 'hwnas.db'}")
    queue = JobQueue(db)
    ids = [queue.submit("noop", {"steps": 2})[0].id for _ in range(3)]
    assert main(["worker", "--once", "--in-process", "--worker-id", "cli"]) == 0
    assert "ran 1 job(s)" in capsys.readouterr().out
    assert main(["worker", "--drain", "--in-process", "--worker-id", "cli"]) == 0
    assert "ran 2 job(s)" in capsys.readouterr().out
    assert all(queue.get(i).status is JobStatus.SUCCEEDED and queue.get(i).lease_owner == "cli" for i in ids)
    db.dispose()


def test_a_failed_jobs_message_names_no_server_path_outside_the_data_roots(queue: JobQueue, tmp_path: Path) -> None:
    message = ("Fashion-MNIST not found. Looked in:\n  root: /data/shared/fmnist (missing train-images)\n"
               "  cache: /root/.cache/hwnas/fashion_mnist (no such directory) and '~/x.npz'; "
               "upload it with POST /v1/datasets")  # fmt: skip
    failing, _ = queue.submit("noop", {"fail": message})
    runner = Runner(queue, LocalArtifactStore(tmp_path / "a"), tmp_path / "runs", poll_s=0.01,
                    visible_roots=(Path("/data/shared"),))  # fmt: skip
    assert runner.serve(drain=True) == 1
    shown = queue.get(failing.id).error_message or ""
    assert "/data/shared/fmnist" in shown and "POST /v1/datasets" in shown
    assert "/root" not in shown and "~/x.npz" not in shown and shown.count("<server path>") == 2
