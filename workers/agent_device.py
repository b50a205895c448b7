"""A remote target's device as a `LatencyDevice`: its agents measure a job's models as leased tasks.

`AgentDevice.measure` stores each model in the artefact store, queues one agent task per model
(``store.agent_tasks``) and waits until the target's agents (``hwnas agent``, one or several
identical boards sharing the work) have posted every result. The tasks are named after the job and
the batch's label, so a job that runs again after its worker died finds the tasks it queued (kept
results are not measured again; waiting ones are still handed out); a task whose agent vanished is
claimed again when its lease expires.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from predictors.latency.devices import DeviceMeasurementError, LatencyDevice, Model, ProgressFn, model_name
from predictors.latency.measure import Measurement, MeasureSettings
from predictors.latency.targets import Target
from store.agent_tasks import DONE, FAILED, add_task, fail_waiting, job_tasks
from store.artifacts import ArtifactStore, register_artifact
from store.base import utcnow
from store.engine import Database
from store.models import Artifact

MODEL_KEY = "agents/models/{sha256}.onnx"


class AgentsUnreachableError(RuntimeError):
    """No agent of the target took or finished any of a batch's tasks for the allowed time."""


class AgentDevice(LatencyDevice):
    """A target measured by its agents through the service's task queue.

    Args:
        db: the service's database.
        store: the artefact store (the agents download the models from it through the API).
        target: the target's spec.
        target_id: the target's row.
        job_id: the job the tasks belong to.
        user_id: the job's owner (the agents of their targets take the tasks).
        wait_s: fail when no task of a batch was claimed or finished for this long.
        poll_s: the wait between two looks at the tasks.
        check: called while waiting; raises to stop (e.g. `WorkContext.check_cancelled`).
        log: called once with a line when a batch waits for agents.
        clock: seconds, monotonic (tests).
        sleep: how to wait (tests).
    """

    def __init__(
        self,
        db: Database,
        store: ArtifactStore,
        target: Target,
        target_id: int,
        *,
        job_id: int,
        user_id: int | None,
        wait_s: float = 3600.0,
        poll_s: float = 0.5,
        check: Callable[[], None] = lambda: None,
        log: Callable[[str], None] = lambda _line: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db, self.store, self.target, self.target_id = db, store, target, target_id
        self.job_id, self.user_id, self.wait_s, self.poll_s = job_id, user_id, wait_s, poll_s
        self.check, self.log, self.clock, self.sleep = check, log, clock, sleep

    def measure(
        self, models: Sequence[Model], settings: MeasureSettings, *, label: str, progress: ProgressFn | None = None
    ) -> list[Measurement]:
        """Queue the batch's tasks (those not queued by an earlier run of the job), wait for their results."""
        keys = [f"{label}/{i}" for i in range(len(models))]
        with self.db.session() as s:
            known = job_tasks(s, self.job_id, keys)
            for key, model in zip(keys, models, strict=True):
                if key not in known:
                    artifact = self._model_artifact(s, model if isinstance(model, bytes) else Path(model).read_bytes())
                    add_task(s, self.target_id, artifact.id, settings, user_id=self.user_id, job_id=self.job_id,
                             key=key)  # fmt: skip
        results = self._wait(keys, progress)
        failures = {model_name(i): str(results[k].get("error")) for i, k in enumerate(keys) if "error" in results[k]}
        if failures:
            raise DeviceMeasurementError(self.target.name, failures)
        return [Measurement.from_dict({f: v for f, v in results[k].items() if f != "agent"}) for k in keys]

    def _model_artifact(self, session: Session, data: bytes) -> Artifact:
        """The stored model with these bytes (stored once, whichever batch or job needs it)."""
        key = MODEL_KEY.format(sha256=hashlib.sha256(data).hexdigest())
        artifact = session.scalars(select(Artifact).where(Artifact.key == key)).first()
        if artifact is None:
            artifact = register_artifact(session, self.store.put(key, data), kind="onnx", job_id=self.job_id,
                                         user_id=self.user_id)  # fmt: skip
        return artifact

    def _wait(self, keys: list[str], progress: ProgressFn | None) -> dict[str, dict[str, object]]:
        """Each task's result (a measurement, or ``{"error": ...}``) once every task of `keys` has one."""
        last_change, seen, told = self.clock(), (-1, -1), False
        while True:
            with self.db.reader() as s:
                tasks = job_tasks(s, self.job_id, keys)
                finished = {k: dict(t.result or {}) for k, t in tasks.items() if t.status in (DONE, FAILED)}
                claimed = sum(t.agent_id is not None for t in tasks.values())
            if (len(finished), claimed) != seen:
                seen, last_change = (len(finished), claimed), self.clock()
                if progress is not None:
                    progress(len(finished), len(keys))
            if len(finished) == len(keys):
                return finished
            idle = self.clock() - last_change
            if idle > self.wait_s:
                reason = (
                    f"no agent of target {self.target.name!r} took or finished a task for {idle:.0f} s; "
                    f"start one on the device: hwnas-agent --server URL --token TOKEN --target {self.target.name}"
                )
                with self.db.session() as s:
                    fail_waiting(s, self.job_id, reason, utcnow())
                raise AgentsUnreachableError(reason)
            if not told and claimed == 0 and idle > 10 * self.poll_s:
                self.log(f"waiting for an agent of target {self.target.name!r} to take {len(keys)} task(s)")
                told = True
            self.check()
            self.sleep(self.poll_s)
