"""The job queue on the SQL store: submit, claim with a lease, heartbeat, progress, finish, cancel.

Claims and heartbeats are leases of `store.leases` (atomic on SQLite and PostgreSQL). Every write a
worker makes after its claim is fenced by the claim's `Lease.token`: once the lease has expired and
another worker has claimed the job, the old worker's writes match no row and raise `LeaseLostError`.

Timestamps come from the caller's clock (UTC); workers sharing a database need synchronised clocks
(NTP) to within a small fraction of the lease.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from store.base import UTCDateTime
from store.db import Database, retrying, utcnow
from store.leases import LeasedTable
from store.models import Job, JobEvent, JobStatus, JobStatusChange

ACTIVE = (JobStatus.RUNNING, JobStatus.CANCELLING)
LEASE_EXPIRED = "lease_expired"
JOBS = LeasedTable(
    Job, Job.id, Job.status, Job.lease_expires_at, waiting=JobStatus.QUEUED, leased=JobStatus.RUNNING,
    attempts=Job.attempts, max_attempts=Job.max_attempts,
)  # fmt: skip


class LeaseLostError(RuntimeError):
    """This worker no longer holds the job's lease (it expired and was claimed again, or the job ended)."""


class IdempotencyConflictError(ValueError):
    """An idempotency key was reused with a different request."""


class JobNotFoundError(KeyError):
    """No job has that id (for that user)."""


@dataclass(frozen=True)
class Lease:
    """A worker's claim on a job; `token` fences every write the worker makes.

    Attributes:
        job_id: the job.
        token: unique to this claim.
        owner: the worker's id.
        attempt: 1 for the first claim, 2 after the first reclaim, ...
        kind: the job's kind.
        params: the job's parameters.
        user_id: the job's owner.
    """

    job_id: int
    token: str
    owner: str
    attempt: int
    kind: str
    params: dict[str, Any]
    user_id: int | None


def request_hash(kind: str, params: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of (kind, params): what an idempotent retry must repeat."""
    return hashlib.sha256(json.dumps([kind, params], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class JobQueue:
    """Jobs on `db`; every method is one transaction, retried after transient database errors.

    Args:
        db: the store.
        clock: the current UTC time (tests pass a fake one).
    """

    def __init__(self, db: Database, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.db, self.clock = db, clock

    # ---- users' side -------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        user_id: int | None = None,
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        priority: int = 0,
    ) -> tuple[Job, bool]:
        """Queue a job; returns it and whether it was created.

        With `idempotency_key`, a repeat of the same request by the same user returns the original
        job (created False). The database enforces the key's uniqueness per user; for jobs without
        a user only the look-up before the insert does (race-free on SQLite, whose writes are serial).

        Raises:
            IdempotencyConflictError: the key was used before with another kind or other parameters.
            ValueError: `max_attempts` < 1.
        """
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        digest = request_hash(kind, params)

        def find(s: Session) -> Job | None:
            user_match = Job.user_id.is_(None) if user_id is None else Job.user_id == user_id
            return s.scalars(select(Job).where(user_match, Job.idempotency_key == idempotency_key)).first()

        def insert() -> tuple[Job, bool]:
            with self.db.session() as s:
                if idempotency_key is not None and (existing := find(s)) is not None:
                    return existing, False
                now = self.clock()
                job = Job(
                    kind=kind, params=params, user_id=user_id, idempotency_key=idempotency_key,
                    request_hash=digest, max_attempts=max_attempts, priority=priority,
                    created_at=now, updated_at=now, event_seq=1,
                )  # fmt: skip
                s.add(job)
                s.flush()
                self._history(s, job.id, None, JobStatus.QUEUED, 0, None, "submitted", seq=1)
                return job, True

        try:
            job, created = retrying(insert)
        except IntegrityError:  # the same key inserted at the same moment by another process
            if idempotency_key is None:
                raise
            with self.db.reader() as s:
                found = find(s)
            assert found is not None
            job, created = found, False
        if not created and job.request_hash != digest:
            raise IdempotencyConflictError(
                f"idempotency key {idempotency_key!r} was used for job {job.id} with a different request"
            )
        return job, created

    def cancel(self, job_id: int, *, user_id: int | None = None) -> JobStatus:
        """Ask a job to stop: QUEUED becomes CANCELLED, RUNNING becomes CANCELLING; others stay. Returns the status.

        Raises:
            JobNotFoundError: no such job (of that user, when `user_id` is given).
        """

        def run() -> JobStatus:
            with self.db.session() as s:
                query = select(Job.status, Job.attempts).where(Job.id == job_id)
                if user_id is not None:
                    query = query.where(Job.user_id == user_id)
                if self.db.dialect == "postgresql":
                    query = query.with_for_update()
                row = s.execute(query).one_or_none()
                if row is None:
                    raise JobNotFoundError(f"no job {job_id}")
                status, attempts = row
                new = {JobStatus.QUEUED: JobStatus.CANCELLED, JobStatus.RUNNING: JobStatus.CANCELLING}.get(status)
                if new is None:
                    return status
                now = self.clock()
                values: dict[str, Any] = {"status": new, "updated_at": now, "event_seq": Job.event_seq + 1}
                if new.terminal:
                    values["finished_at"] = now
                seq = s.execute(
                    update(Job).where(Job.id == job_id, Job.status == status).values(**values).returning(Job.event_seq)
                ).scalar_one()
                self._history(s, job_id, status, new, attempts, None, "cancel requested", seq=seq)
                return new

        return retrying(run)

    def get(self, job_id: int) -> Job:
        """The job's row (detached).

        Raises:
            JobNotFoundError: no such job.
        """
        with self.db.reader() as s:
            job = s.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id}")
        return job

    def events(self, job_id: int, *, after: int = 0, limit: int = 1000) -> list[JobEvent]:
        """The job's events with ``seq > after`` (e.g. an SSE ``Last-Event-ID``), oldest first."""
        with self.db.reader() as s:
            query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after)
            return list(s.scalars(query.order_by(JobEvent.seq).limit(limit)))

    def history(self, job_id: int) -> list[JobStatusChange]:
        """The job's status changes, oldest first."""
        with self.db.reader() as s:
            query = select(JobStatusChange).where(JobStatusChange.job_id == job_id)
            return list(s.scalars(query.order_by(JobStatusChange.id)))

    # ---- workers' side -----------------------------------------------------------------------

    def claim(self, owner: str, lease_s: float, *, kinds: Sequence[str] | None = None) -> Lease | None:
        """Take the next job (highest priority, then oldest) and lease it to `owner` for `lease_s` seconds.

        A job is claimable when QUEUED, or RUNNING with an expired lease and attempts left. Running
        or cancelling jobs whose lease expired with no attempts left end here (FAILED with error
        code ``lease_expired``, or CANCELLED).

        Returns:
            The lease, or None when nothing is claimable.
        """

        def run() -> Lease | None:
            with self.db.session() as s:
                now = self.clock()
                self._end_abandoned(s, now)
                token = uuid.uuid4().hex
                claimed = JOBS.claim(
                    s, now, lease_s,
                    where=[Job.kind.in_(list(kinds))] if kinds is not None else [],
                    order_by=[Job.priority.desc(), Job.id],
                    peek=[Job.status, Job.lease_owner],
                    values={
                        "lease_owner": owner, "lease_token": token, "heartbeat_at": now,
                        "started_at": func.coalesce(Job.started_at, literal(now, UTCDateTime())),
                        "updated_at": now, "event_seq": Job.event_seq + 1,
                    },
                    returning=[Job.attempts, Job.kind, Job.params, Job.user_id, Job.event_seq],
                )  # fmt: skip
                if claimed is None:
                    return None
                (job_id, previous, previous_owner), (_, attempt, kind, params, user_id, seq) = claimed
                reason = "claimed" if previous == JobStatus.QUEUED else f"reclaimed: lease of {previous_owner} expired"
                self._history(s, job_id, previous, JobStatus.RUNNING, attempt, owner, reason, seq=seq)
                return Lease(job_id, token, owner, attempt, kind, params, user_id)

        return retrying(run)

    def heartbeat(self, lease: Lease, lease_s: float) -> JobStatus:
        """Extend the lease by `lease_s` from now; returns the status (CANCELLING: stop the work).

        Raises:
            LeaseLostError: the lease is no longer ours.
        """

        def run() -> JobStatus:
            with self.db.session() as s:
                now = self.clock()
                fence = self._fence(lease)
                row = JOBS.renew(s, now, lease_s, fence, values={"heartbeat_at": now}, returning=[Job.status])
            if row is None:
                raise LeaseLostError(f"job {lease.job_id}: lease {lease.token} of {lease.owner} is lost")
            return JobStatus(row[1])

        return retrying(run, attempts=3)

    def progress(self, lease: Lease, data: dict[str, Any]) -> int:
        """Record the job's progress (replacing the last) and a progress event; returns the event's seq.

        Raises:
            LeaseLostError: the lease is no longer ours.
        """
        return self._event(lease, "progress", data, progress=True)

    def log(self, lease: Lease, message: str, *, level: str = "info") -> int:
        """Append a log event; returns its seq.

        Raises:
            LeaseLostError: the lease is no longer ours.
        """
        return self._event(lease, "log", {"level": level, "message": message}, progress=False)

    def complete(
        self, lease: Lease, result: dict[str, Any], persist: Callable[[Session], dict[str, Any]] | None = None
    ) -> Job:
        """Mark the job SUCCEEDED with `result`, in one transaction with `persist`.

        `persist` writes the result's rows and returns more result fields (e.g. a new supernet's id).

        Raises:
            LeaseLostError: the lease is no longer ours; nothing was written.
        """

        def write(s: Session) -> dict[str, Any]:
            extra = persist(s) if persist is not None else {}
            return {"result": {**result, **extra}}

        return self._finish(lease, JobStatus.SUCCEEDED, ACTIVE, "succeeded", write)

    def fail(self, lease: Lease, code: str, message: str) -> Job:
        """Mark the job FAILED with an error code and message.

        Raises:
            LeaseLostError: the lease is no longer ours; nothing was written.
        """
        values = {"error_code": code, "error_message": message}
        return self._finish(lease, JobStatus.FAILED, ACTIVE, f"{code}: {message}", lambda _s: values)

    def mark_cancelled(self, lease: Lease) -> Job:
        """End a CANCELLING job as CANCELLED once its work has stopped.

        Raises:
            LeaseLostError: the lease is no longer ours (or the job is not CANCELLING).
        """
        return self._finish(lease, JobStatus.CANCELLED, (JobStatus.CANCELLING,), "cancelled", lambda _s: {})

    def release(self, lease: Lease, reason: str) -> Job:
        """Give the job back (the worker shuts down, or its Ray node died).

        It becomes QUEUED again, or FAILED with code ``lease_expired`` when no attempts are left; a
        CANCELLING job becomes CANCELLED.

        Raises:
            LeaseLostError: the lease is no longer ours.
        """
        job = self.get(lease.job_id)
        if job.status == JobStatus.CANCELLING:
            return self.mark_cancelled(lease)
        if job.attempts >= job.max_attempts:
            return self.fail(lease, LEASE_EXPIRED, f"{reason}; no attempts left ({job.attempts}/{job.max_attempts})")
        return self._finish(lease, JobStatus.QUEUED, (JobStatus.RUNNING,), reason, lambda _s: {})

    # ---- internals ---------------------------------------------------------------------------

    @staticmethod
    def _fence(lease: Lease, statuses: Sequence[JobStatus] = ACTIVE) -> ColumnElement[bool]:
        return and_(Job.id == lease.job_id, Job.lease_token == lease.token, Job.status.in_(list(statuses)))

    def _end_abandoned(self, s: Session, now: dt.datetime) -> None:
        """End jobs whose worker vanished and that cannot be claimed again."""
        expired = and_(Job.status.in_(list(ACTIVE)), Job.lease_expires_at < now)
        endings = [
            (
                and_(expired, Job.status == JobStatus.RUNNING, Job.attempts >= Job.max_attempts),
                JobStatus.FAILED,
                {"error_code": LEASE_EXPIRED},
            ),
            (and_(expired, Job.status == JobStatus.CANCELLING), JobStatus.CANCELLED, {}),
        ]
        for condition, new, values in endings:
            rows = s.execute(
                update(Job)
                .where(condition)
                .values(status=new, finished_at=now, updated_at=now, event_seq=Job.event_seq + 1, **values)
                .returning(Job.id, Job.attempts, Job.max_attempts, Job.lease_owner, Job.event_seq)
                .execution_options(synchronize_session=False)
            ).all()
            for job_id, attempts, max_attempts, owner, seq in rows:
                previous = JobStatus.RUNNING if new == JobStatus.FAILED else JobStatus.CANCELLING
                message = f"the lease of worker {owner} expired on attempt {attempts} of {max_attempts}"
                if new == JobStatus.FAILED:
                    message += "; no attempts left"
                    s.execute(update(Job).where(Job.id == job_id).values(error_message=message))
                self._history(s, job_id, previous, new, attempts, owner, message, seq=seq)

    def _event(self, lease: Lease, kind: str, data: dict[str, Any], *, progress: bool) -> int:
        def run() -> int:
            with self.db.session() as s:
                values: dict[str, Any] = {"event_seq": Job.event_seq + 1, "updated_at": self.clock()}
                if progress:
                    values["progress"] = data
                seq = s.execute(
                    update(Job).where(self._fence(lease)).values(**values).returning(Job.event_seq)
                ).scalar_one_or_none()
                if seq is None:
                    raise LeaseLostError(f"job {lease.job_id}: lease {lease.token} of {lease.owner} is lost")
                s.add(JobEvent(job_id=lease.job_id, seq=seq, type=kind, data=data, attempt=lease.attempt))
                return int(seq)

        return retrying(run)

    def _finish(
        self,
        lease: Lease,
        new: JobStatus,
        allowed: Sequence[JobStatus],
        reason: str,
        write: Callable[[Session], dict[str, Any]],
    ) -> Job:
        def run() -> Job:
            with self.db.session() as s:
                previous = s.execute(
                    select(Job.status).where(self._fence(lease, allowed)).with_for_update()
                ).scalar_one_or_none()
                if previous is None:
                    raise LeaseLostError(f"job {lease.job_id}: lease {lease.token} of {lease.owner} is lost")
                now = self.clock()
                values: dict[str, Any] = {"status": new, "updated_at": now, "event_seq": Job.event_seq + 1}
                if new.terminal:
                    values["finished_at"] = now
                else:  # back to the queue: drop the lease
                    values.update(lease_owner=None, lease_expires_at=None)
                seq = s.execute(
                    update(Job)
                    .where(self._fence(lease, allowed))
                    .values(**values)
                    .returning(Job.event_seq)
                    .execution_options(synchronize_session=False)
                ).scalar_one_or_none()
                if seq is None:
                    raise LeaseLostError(f"job {lease.job_id}: lease {lease.token} of {lease.owner} is lost")
                more = write(s)
                if more:
                    s.execute(update(Job).where(Job.id == lease.job_id).values(**more))
                self._history(s, lease.job_id, previous, new, lease.attempt, lease.owner, reason, seq=seq)
                job = s.get(Job, lease.job_id)
                assert job is not None
                s.refresh(job)
                return job

        try:
            return retrying(run)
        except LeaseLostError:
            # A retry after a dropped connection may find its own earlier commit.
            job = self.get(lease.job_id)
            if job.status == new and job.lease_token == lease.token:
                return job
            raise

    @staticmethod
    def _history(
        s: Session,
        job_id: int,
        previous: JobStatus | None,
        new: JobStatus,
        attempt: int,
        worker: str | None,
        reason: str,
        *,
        seq: int,
    ) -> None:
        s.add(
            JobStatusChange(
                job_id=job_id, from_status=previous, to_status=new, attempt=attempt, worker=worker, reason=reason
            )
        )
        data = {"status": new.value, "attempt": attempt, "reason": reason}
        s.add(JobEvent(job_id=job_id, seq=seq, type="status", data=data, attempt=attempt))
