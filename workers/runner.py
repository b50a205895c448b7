"""The job runner behind ``hwnas worker``: claim a job, hold its lease, run its work, record the outcome.

One worker runs one job at a time; run several workers (processes, machines) for more. While a
job runs, a heartbeat thread renews the lease every third of its length and watches for
cancellation; progress events are coalesced to at most one database write per
`progress_interval_s`. The outcome is written in one transaction fenced by the lease, so a worker
that lost its lease (it stalled past the expiry and the job was claimed again) writes nothing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError

from store.artifacts import ArtifactStore
from store.db import retrying
from store.engine import is_transient
from store.models import Job, JobStatus
from store.queue import JobQueue, Lease, LeaseLostError
from store.settings import Settings
from workers.capacity import REPORT_INTERVAL_S, publish
from workers.executors import Executor, ExecutorError, InProcessExecutor
from workers.kinds import JobError, JobKind, WorkCancelledError, WorkContext, get_job_kind

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """``<host>:<pid>:<random>``: unique per worker process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _Heartbeat(threading.Thread):
    """Keeps a lease and watches the job; sets `stop` when the job is being cancelled or the lease is lost.

    The lease is renewed every third of its length; in between, the job's status is read every `check_s`.
    """

    def __init__(self, queue: JobQueue, lease: Lease, lease_s: float, check_s: float, stop: threading.Event) -> None:
        super().__init__(name=f"heartbeat-job-{lease.job_id}", daemon=True)
        self.queue, self.lease, self.lease_s, self.stop = queue, lease, lease_s, stop
        self.check_s = min(check_s, lease_s / 3)
        self.done = threading.Event()
        self.lost = False

    def run(self) -> None:
        renewed = time.monotonic()
        while not self.done.wait(self.check_s):
            try:
                if time.monotonic() - renewed >= self.lease_s / 3 - 1e-3:
                    status = self.queue.heartbeat(self.lease, self.lease_s)
                    renewed = time.monotonic()
                else:
                    status = self.queue.get(self.lease.job_id).status
            except LeaseLostError:
                log.warning("job %d: lease lost; stopping its work", self.lease.job_id)
                self.lost = True
                self.stop.set()
                return
            except DBAPIError as error:  # the next beat may get through before the lease expires
                log.warning("job %d: heartbeat failed: %s", self.lease.job_id, error.orig)
                continue
            if status == JobStatus.CANCELLING:
                self.stop.set()


@dataclass
class _Events:
    """Forwards the work's events to the queue, writing progress at most every `interval_s`."""

    queue: JobQueue
    lease: Lease
    interval_s: float
    stop: threading.Event
    pending: dict[str, Any] | None = None
    last: float = 0.0
    lost: bool = False

    def __call__(self, type_: str, data: dict[str, Any]) -> None:
        if type_ == "progress":
            self.pending = data
            if time.monotonic() - self.last < self.interval_s:
                return
        self._write(type_, data)

    def flush(self) -> None:
        if self.pending is not None:
            self._write("progress", self.pending)

    def _write(self, type_: str, data: dict[str, Any]) -> None:
        try:
            if type_ == "progress":
                self.queue.progress(self.lease, data)
                self.pending, self.last = None, time.monotonic()
            else:
                self.queue.log(self.lease, str(data.get("message", "")), level=str(data.get("level", "info")))
        except LeaseLostError:
            self.lost = True
            self.stop.set()
        except DBAPIError as error:  # progress is best effort; the outcome is retried harder
            log.warning("job %d: could not record a %s event: %s", self.lease.job_id, type_, error.orig)


class Runner:
    """Claims and runs jobs from `queue`.

    Args:
        queue: the job queue.
        store: the artefact store the work writes to.
        runs_dir: parent of the per-job run directories (``job-<id>``).
        executor: where work runs (default: in this process).
        worker_id: this worker's name in leases (default: host, pid and a random suffix).
        lease_s: lease length; the heartbeat renews it every third.
        poll_s: sleep between claims when the queue is empty.
        kinds: only claim jobs of these kinds (default: all).
        progress_interval_s: minimum seconds between two progress writes of a job.
        cancel_check_s: how often a running job's status is read to notice a cancellation.
        keep_run_dirs: keep a job's run directory after it succeeded (it is removed by default).
        visible_roots: server directories a failed job's message may name (the data roots); any other
            absolute path in an unexpected error's message is shown to the user as ``<server path>``
            (the log keeps the whole message).
        capacity_interval_s: while serving, how often the executor's cluster capacity is published
            (`report_capacity`).
    """

    def __init__(
        self,
        queue: JobQueue,
        store: ArtifactStore,
        runs_dir: str | Path,
        *,
        executor: Executor | None = None,
        worker_id: str | None = None,
        lease_s: float = 60.0,
        poll_s: float = 2.0,
        kinds: list[str] | None = None,
        progress_interval_s: float = 1.0,
        cancel_check_s: float = 1.0,
        keep_run_dirs: bool = False,
        visible_roots: tuple[Path, ...] = (),
        capacity_interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self.queue, self.store, self.runs_dir = queue, store, Path(runs_dir).expanduser().resolve()
        self.executor = executor or InProcessExecutor()
        self.worker_id = worker_id or default_worker_id()
        self.lease_s, self.poll_s, self.kinds = lease_s, poll_s, kinds
        self.progress_interval_s, self.cancel_check_s = progress_interval_s, cancel_check_s
        self.keep_run_dirs = keep_run_dirs
        self.visible_roots = visible_roots
        self.capacity_interval_s = capacity_interval_s

    def run_once(self) -> Job | None:
        """Claim one job and run it to its end.

        Returns:
            The job's final row; None if nothing was claimable or the lease was lost while it ran.
        """
        lease = self.queue.claim(self.worker_id, self.lease_s, kinds=self.kinds)
        if lease is None:
            return None
        log.info("job %d (%s): claimed by %s, attempt %d", lease.job_id, lease.kind, self.worker_id, lease.attempt)
        return self.run_lease(lease)

    def report_capacity(self) -> bool:
        """Publish the executor's cluster capacity under this worker's id; False if it has none to report.

        The API refuses a training request that no freshly reported cluster can place (`workers.capacity`).
        """
        capacity = self.executor.capacity()
        if capacity is None:
            return False

        def write() -> None:
            with self.queue.db.session() as session:
                publish(session, self.worker_id, capacity)

        retrying(write)
        return True

    def _try_report_capacity(self) -> bool:
        try:
            return self.report_capacity()
        except Exception as error:  # a report is advisory; the job checks the cluster again
            log.warning("worker %s: could not report the cluster's capacity: %s", self.worker_id, error)
            return True

    def _report_capacity_until(self, done: threading.Event) -> None:
        while not done.wait(self.capacity_interval_s) and self._try_report_capacity():
            pass

    def serve(self, *, stop: threading.Event | None = None, max_jobs: int | None = None, drain: bool = False) -> int:
        """Run jobs until `stop` is set, `max_jobs` have run, or (with `drain`) none is claimable; returns the count.

        The executor's cluster capacity is published first, then by a thread every `capacity_interval_s`.
        """
        stop = stop or threading.Event()
        done = threading.Event()
        if self._try_report_capacity():
            threading.Thread(target=self._report_capacity_until, args=(done,), name="capacity", daemon=True).start()
        try:
            return self._serve(stop, max_jobs, drain)
        finally:
            done.set()

    def _serve(self, stop: threading.Event, max_jobs: int | None, drain: bool) -> int:
        count = 0
        while not stop.is_set() and (max_jobs is None or count < max_jobs):
            try:
                job = self.run_once()
            except DBAPIError as error:
                log.warning("worker %s: database unavailable: %s", self.worker_id, error.orig)
                stop.wait(self.poll_s)
                continue
            if job is None:
                if drain:
                    break
                stop.wait(self.poll_s)
            else:
                count += 1
        return count

    def run_lease(self, lease: Lease) -> Job | None:
        """Run the leased job's work and record its outcome (None if the lease was lost meanwhile)."""
        stop = threading.Event()
        heartbeat = _Heartbeat(self.queue, lease, self.lease_s, self.cancel_check_s, stop)
        events = _Events(self.queue, lease, self.progress_interval_s, stop)
        run_dir = self.runs_dir / f"job-{lease.job_id}"
        heartbeat.start()
        try:
            return self._run(lease, run_dir, events, stop, heartbeat)
        except LeaseLostError:
            log.warning("job %d: lease lost; its outcome was not recorded by %s", lease.job_id, self.worker_id)
            return None
        finally:
            heartbeat.done.set()
            heartbeat.join()

    def _run(
        self, lease: Lease, run_dir: Path, events: _Events, stop: threading.Event, heartbeat: _Heartbeat
    ) -> Job | None:
        try:
            kind = get_job_kind(lease.kind)
            params = kind.parse(lease.params)
        except (KeyError, ValidationError) as error:
            return self.queue.fail(lease, "invalid_job", _message(error))
        try:
            inputs = retrying(lambda: self._inputs(kind, lease, params))
            run_dir.mkdir(parents=True, exist_ok=True)
            db_url = self.queue.db.url.render_as_string(hide_password=False)
            ctx = WorkContext(lease.job_id, lease.attempt, run_dir, self.store, lease.user_id, db_url)
            result = self.executor.execute(kind, params, inputs, ctx, events, stop)
        except WorkCancelledError:
            if heartbeat.lost or events.lost:
                return None
            events.flush()
            return self.queue.mark_cancelled(lease)
        except ExecutorError as error:
            log.warning("job %d: %s; giving it back", lease.job_id, error)
            return self.queue.release(lease, str(error))
        except JobError as error:
            return self.queue.fail(lease, error.code, str(error))
        except Exception as error:
            return self._fail(lease, "work_failed", error)
        if heartbeat.lost or events.lost:
            return None
        events.flush()
        try:
            job = self.queue.complete(lease, result, lambda session: kind.persist(session, lease, params, result))
        except LeaseLostError:
            raise
        except Exception as error:
            return self._fail(lease, "persist_failed", error)
        if not self.keep_run_dirs:
            shutil.rmtree(run_dir, ignore_errors=True)
        return job

    def _fail(self, lease: Lease, code: str, error: Exception) -> Job:
        if isinstance(error, DBAPIError) and is_transient(error):
            raise error  # not the job's fault: its lease expires and it is claimed again
        log.error("job %d failed (%s)", lease.job_id, code, exc_info=error)
        return self.queue.fail(
            lease, code, redact_paths(f"{type(error).__name__}: {_message(error)}", self.visible_roots)
        )

    def _inputs(self, kind: JobKind[Any], lease: Lease, params: BaseModel) -> dict[str, Any]:
        with self.queue.db.reader() as session:
            return kind.inputs(session, lease, params)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])~?/[^\s'\"`,;:()\[\]{}<>]*")
SERVER_PATH = "<server path>"


def redact_paths(text: str, visible_roots: tuple[Path, ...]) -> str:
    """`text` with every absolute (or ``~``) path outside `visible_roots` replaced by ``<server path>``.

    Unexpected errors quote files (a dataset the loader looked for, a cache directory); what a user
    may learn of the server's disk is the data roots the operator shared with them. API routes
    (``/v1/...``) stay as they are.
    """
    roots = [str(root).rstrip("/") for root in visible_roots]

    def hide(match: re.Match[str]) -> str:
        path = match.group(0)
        if path.startswith("/v1/") or any(path == root or path.startswith(root + "/") for root in roots):
            return path
        return SERVER_PATH

    return _ABSOLUTE_PATH.sub(hide, text)


def _message(error: BaseException) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


class NotMigratedError(RuntimeError):
    """The database is not at the newest schema revision."""


def runner_from_settings(
    settings: Settings,
    *,
    in_process: bool = False,
    migrate: bool = False,
    lease_s: float | None = None,
    poll_s: float | None = None,
    kinds: list[str] | None = None,
    worker_id: str | None = None,
) -> Runner:
    """A runner on the store, artefacts and run dirs that `settings` name, running work on Ray unless `in_process`.

    Raises:
        NotMigratedError: the database is behind and `migrate` is false.
    """
    from store.artifacts import LocalArtifactStore
    from store.db import Database, upgrade
    from store.migrate import current_revision, head_revision
    from workers.executors import RayExecutor

    url = settings.db_url
    if migrate:
        upgrade(url)
    elif (found := current_revision(url)) != head_revision():
        raise NotMigratedError(
            f"the database {url} is at schema revision {found}, not {head_revision()}: "
            "run `python -m store.migrate upgrade` (or pass --migrate)"
        )
    return Runner(
        JobQueue(Database(url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)),
        LocalArtifactStore(settings.artifacts_path),
        settings.runs_path,
        executor=InProcessExecutor() if in_process else RayExecutor(),
        worker_id=worker_id,
        lease_s=settings.lease_s if lease_s is None else lease_s,
        visible_roots=settings.resolved_data_roots,
        poll_s=settings.poll_s if poll_s is None else poll_s,
        kinds=kinds,
    )
