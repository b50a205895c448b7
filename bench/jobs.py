"""Job-queue benchmark: jobs claimed and completed per second with 1, 2 and 4 worker processes on SQLite and
PostgreSQL (trivial ``noop`` jobs), and the time from a worker's death to its job's resumption.

    python -m bench.jobs                                   # the full run, recorded in BENCHMARKS.md
    python -m bench.jobs --jobs 50 --workers 1,2 --no-record   # a quick check

Throughput is measured from the database's own timestamps (first claim to last completion), so
process start-up is not counted. PostgreSQL runs on a fresh database (``hwnas_bench_<random>``)
on the server of ``HWNAS_TEST_PG_URL`` (default ``postgres@127.0.0.1:5432``), dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from store.artifacts import LocalArtifactStore
from store.db import Database, upgrade, utcnow
from store.models import Job, JobStatus, JobStatusChange
from store.queue import JobQueue
from workers.runner import Runner

PG_ADMIN_URL = os.environ.get("HWNAS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh, migrated database URL of `backend`."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        upgrade(url)
        yield url
        return
    name = f"hwnas_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _worker(url: str, workdir: str, lease_s: float, start: Any, name: str, drain: bool) -> None:
    db = Database(url)
    runner = Runner(
        JobQueue(db), LocalArtifactStore(Path(workdir) / "artifacts"), Path(workdir) / "runs",
        worker_id=name, lease_s=lease_s, poll_s=0.05, progress_interval_s=0.5,
    )  # fmt: skip
    start.wait()
    runner.serve(drain=drain)


def throughput(url: str, workdir: Path, jobs: int, workers: int) -> float:
    """Jobs per second of `workers` processes draining `jobs` noop jobs."""
    queue = JobQueue(Database(url))
    for _ in range(jobs):
        queue.submit("noop", {})
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(url, str(workdir), 60.0, start, f"w{i}", True)) for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # let every process import and connect before the start signal
    start.set()
    for p in procs:
        p.join()
    with queue.db.reader() as s:
        done = s.scalar(select(func.count()).where(Job.status == JobStatus.SUCCEEDED))
        first, last = s.execute(select(func.min(Job.started_at), func.max(Job.finished_at))).one()
    queue.db.dispose()
    if done != jobs or first is None or last is None:
        raise RuntimeError(f"{done} of {jobs} jobs succeeded")
    return float(jobs / (last - first).total_seconds())


def resumption(url: str, workdir: Path, lease_s: float) -> float:
    """Seconds from SIGKILL of the worker running a job to the job's claim by a waiting worker."""
    queue = JobQueue(Database(url))
    job, _ = queue.submit("noop", {"seconds": 600, "steps": 6000})
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    start.set()
    doomed = ctx.Process(target=_worker, args=(url, str(workdir), lease_s, start, "doomed", False))
    doomed.start()
    while queue.get(job.id).progress is None:
        time.sleep(0.02)
    rescuer = ctx.Process(target=_worker, args=(url, str(workdir), lease_s, start, "rescuer", False))
    rescuer.start()
    time.sleep(2.0)  # the rescuer is up and polling
    assert doomed.pid is not None
    os.kill(doomed.pid, signal.SIGKILL)
    killed_at = utcnow()
    doomed.join()
    while queue.get(job.id).attempts < 2:
        time.sleep(0.02)
    with queue.db.reader() as s:
        claimed_at = s.scalar(
            select(JobStatusChange.at).where(JobStatusChange.job_id == job.id, JobStatusChange.attempt == 2)
        )
    queue.cancel(job.id)
    rescuer.terminate()
    rescuer.join()
    queue.db.dispose()
    assert claimed_at is not None
    return float((claimed_at - killed_at).total_seconds())


def pg_reachable() -> bool:
    """Whether the PostgreSQL server answers."""
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def available_backends(names: str) -> list[str]:
    """The comma-separated backends to run, without PostgreSQL when its server is not reachable."""
    backends = names.split(",")
    if "postgres" in backends and not pg_reachable():
        print(f"PostgreSQL not reachable at {PG_ADMIN_URL}: skipped")
        backends.remove("postgres")
    return backends


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="noop jobs per throughput run")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--lease", type=float, default=10.0, help="lease (s) in the resumption measurement")
    parser.add_argument("--no-record", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    backends = available_backends(args.backends)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hwnas-bench-jobs-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            figures = []
            for workers in counts:
                with database(backend, workdir) as url:
                    figures.append(throughput(url, workdir, args.jobs, workers))
                print(f"{backend}: {workers} worker(s): {figures[-1]:.0f} jobs/s")
            with database(backend, workdir) as url:
                resume_s = resumption(url, workdir, args.lease)
            print(f"{backend}: death to resumption with a {args.lease:g} s lease: {resume_s:.2f} s")
            rows.append((backend, figures, resume_s))
    header = "| database | " + " | ".join(f"{w} worker(s), jobs/s" for w in counts) + " | death -> resumption (s) |"
    lines = [header, "|" + " --- |" * (len(counts) + 2)]
    for backend, figures, resume_s in rows:
        lines.append(f"| {backend} | " + " | ".join(f"{f:.0f}" for f in figures) + f" | {resume_s:.2f} |")
    body = (
        f"{args.jobs} `noop` jobs per run, drained by worker processes (in-process executor, no Ray) "
        f"started together; jobs/s from the first claim to the last completion. Death -> resumption: a "
        f"worker is SIGKILLed mid-job with a {args.lease:g} s lease; time until a waiting worker (polling "
        f"every 0.05 s) claims the job (the lease's remainder after the last heartbeat, at most the lease).\n\n"
        + "\n".join(lines)
    )
    print(body)
    if not args.no_record:
        from bench.report import record

        record("bench.jobs", body)


if __name__ == "__main__":
    main()
