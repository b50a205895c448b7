"""The job queue on SQLite and PostgreSQL: claims, leases and fencing, attempts, cancellation, events, races, load."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from store.db import Database
from store.models import Job, JobStatus, JobStatusChange
from store.queue import IdempotencyConflictError, JobNotFoundError, JobQueue, LeaseLostError


class FakeClock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(store_db: Database, clock: FakeClock) -> JobQueue:
    return JobQueue(store_db, clock=clock)


def statuses(queue: JobQueue, job_id: int) -> list[str]:
    return [change.to_status.value for change in queue.history(job_id)]


def test_submit_claim_heartbeat_complete(queue: JobQueue, clock: FakeClock) -> None:
    job, created = queue.submit("noop", {"seconds": 0}, max_attempts=2)
    assert created and job.status is JobStatus.QUEUED and job.attempts == 0
    lease = queue.claim("w1", lease_s=10)
    assert lease is not None and (lease.job_id, lease.attempt, lease.kind) == (job.id, 1, "noop")
    assert queue.claim("w2", lease_s=10) is None, "a leased job is not claimable"
    clock.advance(8)
    assert queue.heartbeat(lease, 10) is JobStatus.RUNNING
    clock.advance(8)  # 16 s after the claim, but only 8 after the heartbeat
    assert queue.claim("w2", lease_s=10) is None
    running = queue.get(job.id)
    assert running.lease_owner == "w1" and running.lease_expires_at == clock.now + dt.timedelta(seconds=2)
    done = queue.complete(lease, {"answer": 42}, lambda _s: {"extra": 1})
    assert done.status is JobStatus.SUCCEEDED and done.result == {"answer": 42, "extra": 1}
    assert done.finished_at == clock.now
    assert statuses(queue, job.id) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    with pytest.raises(LeaseLostError):
        queue.heartbeat(lease, 10)


def test_claims_follow_priority_then_age_and_kinds(queue: JobQueue) -> None:
    first, _ = queue.submit("noop", {"n": 1})
    urgent, _ = queue.submit("noop", {"n": 2}, priority=5)
    other, _ = queue.submit("train_supernet", {"n": 3})
    order = [queue.claim("w", 10, kinds=["noop"]) for _ in range(3)]
    assert [lease.job_id if lease else None for lease in order] == [urgent.id, first.id, None]
    lease = queue.claim("w", 10)
    assert lease is not None and lease.job_id == other.id


def test_expired_lease_is_reclaimed_and_the_old_worker_is_fenced_off(queue: JobQueue, clock: FakeClock) -> None:
    job, _ = queue.submit("noop", {}, max_attempts=3)
    old = queue.claim("w1", lease_s=5)
    assert old is not None
    queue.progress(old, {"step": 1})
    clock.advance(6)
    new = queue.claim("w2", lease_s=5)
    assert new is not None and new.job_id == job.id and new.attempt == 2 and new.token != old.token
    for stale_write in (
        lambda: queue.heartbeat(old, 5),
        lambda: queue.progress(old, {"step": 2}),
        lambda: queue.log(old, "hello"),
        lambda: queue.complete(old, {"by": "w1"}),
        lambda: queue.fail(old, "boom", "from the old worker"),
    ):
        with pytest.raises(LeaseLostError):
            stale_write()
    queue.progress(new, {"step": 1, "by": "w2"})
    done = queue.complete(new, {"by": "w2"})
    assert done.result == {"by": "w2"} and done.progress == {"step": 1, "by": "w2"} and done.attempts == 2
    history = queue.history(job.id)
    assert [(h.to_status.value, h.attempt, h.worker) for h in history] == [
        ("QUEUED", 0, None), ("RUNNING", 1, "w1"), ("RUNNING", 2, "w2"), ("SUCCEEDED", 2, "w2"),
    ]  # fmt: skip
    assert "lease of w1 expired" in (history[2].reason or "")


def test_a_job_out_of_attempts_fails_with_a_clear_error(queue: JobQueue, clock: FakeClock) -> None:
    job, _ = queue.submit("noop", {}, max_attempts=2)
    for attempt in (1, 2):
        lease = queue.claim(f"w{attempt}", lease_s=5)
        assert lease is not None and lease.attempt == attempt
        clock.advance(6)
    assert queue.claim("w3", lease_s=5) is None
    failed = queue.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "lease_expired"
    assert failed.error_message == "the lease of worker w2 expired on attempt 2 of 2; no attempts left"
    assert statuses(queue, job.id) == ["QUEUED", "RUNNING", "RUNNING", "FAILED"]


def test_release_requeues_or_fails(queue: JobQueue) -> None:
    job, _ = queue.submit("noop", {}, max_attempts=2)
    lease = queue.claim("w1", 5)
    assert lease is not None
    assert queue.release(lease, "node died").status is JobStatus.QUEUED
    lease = queue.claim("w2", 5)
    assert lease is not None and lease.attempt == 2
    released = queue.release(lease, "node died again")
    assert released.status is JobStatus.FAILED and released.error_code == "lease_expired"
    assert statuses(queue, job.id) == ["QUEUED", "RUNNING", "QUEUED", "RUNNING", "FAILED"]


def test_cancel_queued_running_and_finished_jobs(queue: JobQueue, clock: FakeClock) -> None:
    queued, _ = queue.submit("noop", {"n": 1})
    assert queue.cancel(queued.id) is JobStatus.CANCELLED
    assert queue.claim("w", 5) is None
    running, _ = queue.submit("noop", {"n": 2})
    lease = queue.claim("w", 5)
    assert lease is not None
    assert queue.cancel(running.id) is JobStatus.CANCELLING
    assert queue.heartbeat(lease, 5) is JobStatus.CANCELLING
    assert queue.mark_cancelled(lease).status is JobStatus.CANCELLED
    assert queue.cancel(running.id) is JobStatus.CANCELLED, "cancelling a finished job changes nothing"
    assert statuses(queue, running.id) == ["QUEUED", "RUNNING", "CANCELLING", "CANCELLED"]
    # a worker that dies while cancelling: the job ends CANCELLED when its lease expires
    orphan, _ = queue.submit("noop", {"n": 3})
    assert queue.claim("w", 5) is not None
    queue.cancel(orphan.id)
    clock.advance(6)
    assert queue.claim("w", 5) is None
    assert queue.get(orphan.id).status is JobStatus.CANCELLED
    with pytest.raises(JobNotFoundError):
        queue.cancel(10_000)


def test_cancel_checks_the_owner(queue: JobQueue, store_db: Database) -> None:
    from store.models import User

    with store_db.session() as s:
        alice, bob = User(name="alice"), User(name="bob")
        s.add_all([alice, bob])
    job, _ = queue.submit("noop", {}, user_id=alice.id)
    with pytest.raises(JobNotFoundError):
        queue.cancel(job.id, user_id=bob.id)
    assert queue.cancel(job.id, user_id=alice.id) is JobStatus.CANCELLED


def test_idempotency_keys(queue: JobQueue, store_db: Database) -> None:
    from store.models import User

    with store_db.session() as s:
        alice, bob = User(name="alice"), User(name="bob")
        s.add_all([alice, bob])
    first, created = queue.submit("noop", {"seconds": 1}, user_id=alice.id, idempotency_key="k1")
    again, created_again = queue.submit("noop", {"seconds": 1}, user_id=alice.id, idempotency_key="k1")
    assert created and not created_again and again.id == first.id
    other_user, created_other = queue.submit("noop", {"seconds": 1}, user_id=bob.id, idempotency_key="k1")
    assert created_other and other_user.id != first.id, "keys are unique per user"
    with pytest.raises(IdempotencyConflictError, match="k1"):
        queue.submit("noop", {"seconds": 2}, user_id=alice.id, idempotency_key="k1")
    with pytest.raises(ValueError, match="max_attempts"):
        queue.submit("noop", {}, max_attempts=0)


def test_concurrent_retries_with_one_idempotency_key_make_one_job(store_db: Database, db_url: str) -> None:
    from store.models import User

    with store_db.session() as s:
        alice = User(name="alice")
        s.add(alice)
    queues = [JobQueue(Database(db_url)) for _ in range(6)]
    barrier = threading.Barrier(len(queues))

    def submit(q: JobQueue) -> tuple[int, bool]:
        barrier.wait()
        job, created = q.submit("noop", {"steps": 2}, user_id=alice.id, idempotency_key="retry-me")
        return job.id, created

    try:
        with ThreadPoolExecutor(len(queues)) as pool:
            outcomes = list(pool.map(submit, queues))
    finally:
        for q in queues:
            q.db.dispose()
    assert len({job_id for job_id, _ in outcomes}) == 1 and sum(created for _, created in outcomes) == 1
    with store_db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1


def test_events_are_numbered_per_job_and_readable_after_an_id(queue: JobQueue) -> None:
    a, _ = queue.submit("noop", {"n": 1})
    b, _ = queue.submit("noop", {"n": 2})
    lease_a, lease_b = queue.claim("w", 5), queue.claim("w", 5)
    assert lease_a is not None and lease_b is not None
    queue.progress(lease_a, {"step": 1})
    queue.log(lease_b, "b says hi")
    queue.log(lease_a, "a says hi", level="warning")
    queue.complete(lease_a, {})
    events = queue.events(a.id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.type for e in events] == ["status", "status", "progress", "log", "status"]
    assert events[3].data == {"level": "warning", "message": "a says hi"}
    assert [e.seq for e in queue.events(a.id, after=3)] == [4, 5]
    assert [e.type for e in queue.events(b.id)] == ["status", "status", "log"]
    assert queue.get(a.id).event_seq == 5


def test_two_workers_race_for_one_job(store_db: Database, db_url: str) -> None:
    """Workers with their own connections claim at the same instant, many times: exactly one wins each job."""
    queues = [JobQueue(Database(db_url)) for _ in range(4)]
    try:
        for round_ in range(10):
            job, _ = queues[0].submit("noop", {"round": round_})
            barrier = threading.Barrier(len(queues))

            def claim(i: int, barrier: threading.Barrier = barrier) -> int | None:
                barrier.wait()
                lease = queues[i].claim(f"w{i}", lease_s=30)
                return None if lease is None else lease.job_id

            with ThreadPoolExecutor(len(queues)) as pool:
                won = [r for r in pool.map(claim, range(len(queues))) if r is not None]
            assert won == [job.id]
        with store_db.reader() as s:
            claims = s.scalar(select(func.count()).where(JobStatusChange.to_status == JobStatus.RUNNING))
        assert claims == 10
    finally:
        for q in queues:
            q.db.dispose()


def test_a_thousand_jobs_submitted_concurrently_each_run_once(store_db: Database, db_url: str) -> None:
    submit_q = JobQueue(store_db)
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: submit_q.submit("noop", {"i": i})[0].id, range(1000)))
    assert len(set(ids)) == 1000
    runs: Counter[int] = Counter()
    lock = threading.Lock()
    workers = [JobQueue(Database(db_url)) for _ in range(3)]

    def work(q: JobQueue, name: str) -> None:
        while (lease := q.claim(name, lease_s=60)) is not None:
            with lock:
                runs[lease.job_id] += 1
            q.complete(lease, {"i": lease.params["i"]})

    try:
        threads = [threading.Thread(target=work, args=(q, f"w{i}")) for i, q in enumerate(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for q in workers:
            q.db.dispose()
    assert sorted(runs) == sorted(ids) and set(runs.values()) == {1}
    with store_db.reader() as s:
        rows = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        assert rows == [(JobStatus.SUCCEEDED, 1000)]
        assert s.scalar(select(func.count()).where(JobStatusChange.to_status == JobStatus.RUNNING)) == 1000
