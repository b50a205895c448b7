"""Job kinds: a registry of small classes (`JobKind`); importing this package registers the built-in ones.

Built in: ``train_supernet``, ``build_latency_table``, ``search``, ``export_subnet``, ``finetune_subnet`` and
``noop`` (a trivial job for tests and benchmarks).
Add a kind with ``@register_job_kind("name")`` on a `TypedJobKind` subclass (pydantic parameters, inputs and
result; `JobKind` is the JSON interface the runner uses).
"""

from workers.kinds import export, finetune, latency, noop, search, train
from workers.kinds.base import (
    JOB_KINDS,
    JobError,
    JobKind,
    NoInputs,
    TypedJobKind,
    WorkCancelledError,
    WorkContext,
    get_job_kind,
    register_job_kind,
    validate_params,
)

__all__ = [
    "JOB_KINDS",
    "JobError",
    "JobKind",
    "NoInputs",
    "TypedJobKind",
    "WorkCancelledError",
    "WorkContext",
    "export",
    "finetune",
    "get_job_kind",
    "latency",
    "noop",
    "register_job_kind",
    "search",
    "train",
    "validate_params",
]
