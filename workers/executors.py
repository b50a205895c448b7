"""Where a job's work runs: in the worker's process, or as a Ray task (local Ray, or a cluster via RAY_ADDRESS).

Both take the kind, its parsed parameters, its inputs and a `WorkContext`; they feed the work's
events to `on_event` as they happen, return its result, raise its exception, and raise
`WorkCancelledError` soon after `stop` is set.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from workers.capacity import Capacity
from workers.kinds.base import EventSink, JobKind, WorkCancelledError, WorkContext, get_job_kind

log = logging.getLogger(__name__)


class ExecutorError(RuntimeError):
    """The machinery failed (a Ray node or worker process died), not the work: the job may be retried."""


class Executor(ABC):
    """Runs a job's work somewhere."""

    @abstractmethod
    def execute(
        self,
        kind: JobKind[Any],
        params: BaseModel,
        inputs: dict[str, Any],
        ctx: WorkContext,
        on_event: EventSink,
        stop: threading.Event,
    ) -> dict[str, Any]:
        """Run the work to its end and return its result.

        Raises:
            WorkCancelledError: `stop` was set before the work finished.
            ExecutorError: the work's process or node died.
            Exception: whatever the work raised.
        """

    def capacity(self) -> Capacity | None:
        """The resources of the Ray cluster the work runs on; None where it runs in no cluster of its own."""
        return None


class InProcessExecutor(Executor):
    """The work runs in the calling thread; it stops at its next progress report or `check_cancelled`."""

    def execute(
        self,
        kind: JobKind[Any],
        params: BaseModel,
        inputs: dict[str, Any],
        ctx: WorkContext,
        on_event: EventSink,
        stop: threading.Event,
    ) -> dict[str, Any]:
        """Run `kind.run` here."""
        ctx.emit, ctx.stop = on_event, stop
        ctx.check_cancelled()
        return kind.run(params, inputs, ctx)


def _ray_work(kind_name: str, params: dict[str, Any], inputs: dict[str, Any], ctx: WorkContext) -> Iterator[Any]:
    """The Ray task: runs the work in a thread and streams ("event", type, data) items, then ("result", r)."""
    kind = get_job_kind(kind_name)
    events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
    outcome: dict[str, Any] = {}
    ctx.emit = lambda type_, data: events.put((type_, data))

    def target() -> None:
        try:
            outcome["result"] = kind.run(kind.parse(params), inputs, ctx)
        except BaseException as error:
            outcome["error"] = error
        finally:
            events.put(None)

    threading.Thread(target=target, name=f"job-{ctx.job_id}", daemon=True).start()
    while (item := events.get()) is not None:
        yield ("event", *item)
    if "error" in outcome:
        raise outcome["error"]
    yield ("result", outcome["result"])


class RayExecutor(Executor):
    """The work runs as a Ray task that asks for the kind's CPUs and custom resources.

    Joins the cluster at `address` (default: ``RAY_ADDRESS``, else a new local Ray that advertises
    ``target:<name>`` for the targets measurable here) on first use, unless Ray is already
    initialised in this process. Cancellation kills the task
    (``ray.cancel(force=True)``).

    Args:
        address: Ray cluster address.
        poll_s: how often the stop flag is checked while waiting for the task.
        init_kwargs: more arguments for ``ray.init``.
    """

    def __init__(self, address: str | None = None, *, poll_s: float = 0.2, **init_kwargs: Any) -> None:
        self.address, self.poll_s, self.init_kwargs = address, poll_s, init_kwargs
        self._remote: Any = None
        self._connecting = threading.Lock()  # the runner's capacity reports and its jobs both connect

    def _connect(self) -> None:
        import ray

        with self._connecting:
            if ray.is_initialized():
                return
            kwargs = {"log_to_driver": False, **self.init_kwargs}
            if self.address is None and not os.environ.get("RAY_ADDRESS") and "resources" not in kwargs:
                # A new local Ray offers the targets this machine measures, so their jobs can be scheduled.
                from workers.ray_tasks.latency import local_target_resources

                kwargs["resources"] = local_target_resources()
            ray.init(address=self.address, **kwargs)

    def _task(self) -> Any:
        import ray

        self._connect()
        if self._remote is None:
            self._remote = ray.remote(num_returns="streaming")(_ray_work)
        return self._remote

    def capacity(self) -> Capacity:
        """The cluster's resources now (joining it first if needed)."""
        self._connect()
        return Capacity.of_ray()

    def execute(
        self,
        kind: JobKind[Any],
        params: BaseModel,
        inputs: dict[str, Any],
        ctx: WorkContext,
        on_event: EventSink,
        stop: threading.Event,
    ) -> dict[str, Any]:
        """Submit the Ray task and follow its stream."""
        import ray
        from ray import exceptions as rex

        options: dict[str, Any] = {
            "num_cpus": kind.ray_cpus(params),
            "max_retries": 0,
            "name": f"hwnas-job-{ctx.job_id}",
        }
        resources = kind.ray_resources(params)
        if resources:
            options["resources"] = resources
        stream = self._task().options(**options).remote(kind.name, params.model_dump(mode="json"), inputs, ctx)
        try:
            while True:
                if stop.is_set():
                    ray.cancel(stream, force=True)
                    raise WorkCancelledError(f"job {ctx.job_id}: Ray task cancelled")
                ready, _ = ray.wait([stream], timeout=self.poll_s)
                if not ready:
                    continue
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    raise ExecutorError(f"job {ctx.job_id}: the Ray task ended without a result") from None
                if item[0] == "result":
                    return dict(item[1])
                on_event(item[1], item[2])
        except rex.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, BaseException) else error
            raise cause from None
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.RaySystemError, rex.ObjectLostError) as error:
            raise ExecutorError(f"job {ctx.job_id}: {type(error).__name__}: {error}") from error
