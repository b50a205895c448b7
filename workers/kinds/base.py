"""The job-kind interface: what a kind of job does, where its work runs, and what it stores."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session

from nas.registry import Registry
from store.artifacts import ArtifactStore
from store.queue import Lease

P = TypeVar("P", bound=BaseModel)
In = TypeVar("In", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
EventSink = Callable[[str, dict[str, Any]], None]


class WorkCancelledError(Exception):
    """The work was asked to stop (the job is being cancelled, or its lease was lost)."""


class JobError(Exception):
    """A failure with a specific error code (e.g. ``not_found``) that ends the job as FAILED.

    Args:
        code: machine-readable code, stored in the job's `error_code`.
        message: what went wrong, for the user.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)  # both in args, so that it survives pickling (Ray)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return self.message


def _discard(_type: str, _data: dict[str, Any]) -> None:
    pass


@dataclass
class WorkContext:
    """What a job's work gets besides its parameters; it travels to Ray tasks (so it is picklable).

    Attributes:
        job_id: the job.
        attempt: 1 on the first claim, more on a reclaim.
        run_dir: the job's own directory (checkpoints live here, so a reclaimed job resumes from them);
            shared across attempts, so on a cluster it must be on a shared filesystem to resume elsewhere.
        store: the artefact store.
        user_id: the job's owner.
        db_url: the service's database, for work that hands tasks to device agents and waits for
            them (`workers.agent_device`); None where the work runs without one.
    """

    job_id: int
    attempt: int
    run_dir: Path
    store: ArtifactStore
    user_id: int | None = None
    db_url: str | None = None
    emit: EventSink = field(default=_discard, repr=False)
    stop: threading.Event | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        # The event sink and the stop flag belong to the process that runs the work; they are set there.
        return {**self.__dict__, "emit": _discard, "stop": None}

    def progress(self, **data: Any) -> None:
        """Report progress (JSON-able values); raises `WorkCancelledError` if the work should stop."""
        self.check_cancelled()
        self.emit("progress", data)

    def log(self, message: str, level: str = "info") -> None:
        """Append a log line to the job's events."""
        self.emit("log", {"message": message, "level": level})

    def check_cancelled(self) -> None:
        """Raise `WorkCancelledError` if the job is being cancelled or its lease was lost."""
        if self.stop is not None and self.stop.is_set():
            raise WorkCancelledError(f"job {self.job_id} was asked to stop")


class JobKind(ABC, Generic[P]):
    """A kind of job; subclasses are registered with `register_job_kind` and know nothing of the runner.

    Contract: `Params` validates the job's parameters (at submission and again before the work).
    `inputs` runs on the worker with the database (resolve ids to artefacts); `run` is the work
    itself, on a Ray task (or in the worker's process) without the database: it reports through
    the context, writes artefacts to the store, and returns a JSON-able result; `persist` runs in
    the transaction that marks the job SUCCEEDED and registers the result's rows. `run` must be
    safe to repeat after a crash (a reclaimed job runs it again, resuming from its run dir).
    """

    Params: ClassVar[type[BaseModel]]
    num_cpus: ClassVar[float] = 1.0
    name: str = ""
    """The name the kind is registered under (set by `get_job_kind`)."""

    def parse(self, params: dict[str, Any]) -> P:
        """Validate raw parameters.

        Raises:
            pydantic.ValidationError: they do not fit `Params`.
        """
        return self.Params.model_validate(params)  # type: ignore[return-value]

    def ray_cpus(self, params: P) -> float:
        """CPUs the work's Ray task asks for (`num_cpus` by default).

        A kind whose work starts Ray workers of its own (Ray Train) asks for none, so that its task
        does not hold the CPUs those workers wait for.
        """
        return self.num_cpus

    def ray_resources(self, params: P) -> dict[str, float]:
        """Custom Ray resources the work needs (e.g. ``{"target:cpu-ort": 1}``); none by default."""
        return {}

    def inputs(self, session: Session, lease: Lease, params: P) -> dict[str, Any]:
        """Resolve what the work needs from the database (runs on the worker); nothing by default."""
        return {}

    @abstractmethod
    def run(self, params: P, inputs: dict[str, Any], ctx: WorkContext) -> dict[str, Any]:
        """Do the work; return a JSON-able result."""

    def persist(self, session: Session, lease: Lease, params: P, result: dict[str, Any]) -> dict[str, Any]:
        """Write the result's rows in the completion transaction; returns fields to add to the result."""
        return {}


class NoInputs(BaseModel):
    """The inputs of a kind that needs nothing from the database."""


class TypedJobKind(JobKind[P], Generic[P, In, R]):
    """A job kind whose inputs and result are pydantic models (`Inputs`, `Result`); the built-in kinds are.

    The runner speaks JSON (`JobKind`); this class turns it into the models and back: subclasses
    implement `resolve` (the inputs, from the database), `work` (the work) and `record` (the rows).
    The stored result is ``Result.model_dump(mode="json")``.
    """

    Inputs: ClassVar[type[BaseModel]] = NoInputs
    Result: ClassVar[type[BaseModel]]

    def inputs(self, session: Session, lease: Lease, params: P) -> dict[str, Any]:
        """`resolve`, as a dict."""
        return self.resolve(session, lease, params).model_dump()

    def run(self, params: P, inputs: dict[str, Any], ctx: WorkContext) -> dict[str, Any]:
        """`work` on the parsed inputs; its result as JSON."""
        return self.work(params, self.Inputs.model_validate(inputs), ctx).model_dump(mode="json")  # type: ignore[arg-type]

    def persist(self, session: Session, lease: Lease, params: P, result: dict[str, Any]) -> dict[str, Any]:
        """`record` of the parsed result."""
        return self.record(session, lease, params, self.Result.model_validate(result))  # type: ignore[arg-type]

    def resolve(self, session: Session, lease: Lease, params: P) -> In:
        """What the work needs from the database (runs on the worker); nothing by default."""
        return self.Inputs()  # type: ignore[return-value]

    @abstractmethod
    def work(self, params: P, inputs: In, ctx: WorkContext) -> R:
        """Do the work."""

    def record(self, session: Session, lease: Lease, params: P, result: R) -> dict[str, Any]:
        """Write the result's rows in the completion transaction; returns fields to add to the stored result."""
        return {}


JOB_KINDS: Registry[type[JobKind[Any]]] = Registry("job kind")
register_job_kind = JOB_KINDS.register


def get_job_kind(name: str) -> JobKind[Any]:
    """An instance of the kind registered as `name`.

    Raises:
        KeyError: unknown kind; the message lists the registered ones.
    """
    kind = JOB_KINDS.get(name)()
    kind.name = name
    return kind


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` checked against the kind's `Params`, as JSON (what to store in the job row).

    Raises:
        KeyError: unknown kind.
        pydantic.ValidationError: bad parameters (the error names the field).
    """
    return get_job_kind(kind).parse(params).model_dump(mode="json")
