"""Latency measurement inside the Ray cluster, on the nodes that have a target.

A node offers a target by advertising one unit of the custom resource ``target:<name>``::

    ray start --address HEAD --resources '{"target:cpu-ort": 1}'

Every measurement task asks for that unit, so a node runs its target's measurements one at a
time (nothing else of ours measures beside them) and only nodes with the target run them.
Tasks receive plain data (ONNX bytes, target and settings as dicts) and return plain data, the
same that a remote agent exchanges with the service.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas.space import SearchSpace
from predictors.latency import LookupTable, Measurement, MeasureSettings, Target, get_target
from predictors.latency.spaces import space_from_dict, space_to_dict


def target_resource(target: Target | str) -> str:
    """The Ray custom resource a node advertises to offer a target: ``target:<name>``."""
    return f"target:{target if isinstance(target, str) else target.name}"


def local_target_resources() -> dict[str, float]:
    """One unit of ``target:<name>`` per registered target this machine can measure (for a local Ray)."""
    from predictors.latency import list_targets

    return {target_resource(name): 1.0 for name in list_targets() if get_target(name).available}


@dataclass(frozen=True)
class TaskRecord:
    """A measurement and when and where its task ran.

    Attributes:
        measurement: the result.
        started: wall-clock start of the measurement (time.time()).
        finished: wall-clock end.
        node: the Ray node id.
        pid: the worker process.
    """

    measurement: Measurement
    started: float
    finished: float
    node: str
    pid: int


def _measure_task(
    model: bytes, target: dict[str, Any], settings: dict[str, Any], shape: list[int] | None
) -> dict[str, Any]:
    import ray

    from predictors.latency.measure import measure_onnx

    started = time.time()
    m = measure_onnx(
        model, Target.from_dict(target), MeasureSettings.from_dict(settings), None if shape is None else tuple(shape)
    )
    return {
        "measurement": m.to_dict(),
        "started": started,
        "finished": time.time(),
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }


def _table_task(
    space: dict[str, Any], target: dict[str, Any], resolutions: list[int] | None, settings: dict[str, Any]
) -> dict[str, Any]:
    table = LookupTable.build(
        space_from_dict(space), Target.from_dict(target), resolutions, settings=MeasureSettings.from_dict(settings)
    )
    return table.to_dict()


def _remote(fn: Any, target: Target) -> Any:
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    return ray.remote(num_cpus=1, resources={target_resource(target): 1})(fn)


def _resolve(target: Target | str) -> Target:
    return get_target(target) if isinstance(target, str) else target


def measure_onnx_on_ray(
    models: Sequence[bytes],
    target: Target | str,
    settings: MeasureSettings | None = None,
    input_shape: Sequence[int] | None = None,
) -> list[TaskRecord]:
    """Measure ONNX models, one Ray task each, on nodes offering the target; results in order.

    Starts a local Ray if none is running (it offers no target unless started with the
    resource, so connect to a cluster or call ``ray.init(resources=...)`` first).

    Args:
        models: ONNX model bytes.
        target: the target (or its registered name); the task measures with these settings.
        settings: measurement settings.
        input_shape: the input's shape without batch (default: each model's own).
    """
    t = _resolve(target)
    task = _remote(_measure_task, t)
    settings_dict = (settings or MeasureSettings()).to_dict()
    shape = None if input_shape is None else list(input_shape)
    refs = [task.remote(model, t.to_dict(), settings_dict, shape) for model in models]
    import ray

    return [
        TaskRecord(Measurement.from_dict(r["measurement"]), r["started"], r["finished"], r["node"], r["pid"])
        for r in ray.get(refs)
    ]


def measure_subnets_on_ray(
    space: SearchSpace,
    archs: Sequence[Mapping[str, Any]],
    target: Target | str,
    settings: MeasureSettings | None = None,
) -> list[Measurement]:
    """End-to-end latency of subnets (exported to ONNX here, measured on the target's nodes)."""
    from predictors.latency.models import subnet_onnx

    models = [subnet_onnx(space, arch) for arch in archs]
    return [r.measurement for r in measure_onnx_on_ray(models, target, settings)]


def build_table_on_ray(
    space: SearchSpace,
    target: Target | str,
    resolutions: Sequence[int] | None = None,
    settings: MeasureSettings | None = None,
) -> LookupTable:
    """`LookupTable.build` as one Ray task on a node offering the target (it holds the target throughout)."""
    t = _resolve(target)
    task = _remote(_table_task, t)
    import ray

    res = None if resolutions is None else [int(r) for r in resolutions]
    data = ray.get(task.remote(space_to_dict(space), t.to_dict(), res, (settings or MeasureSettings()).to_dict()))
    return LookupTable.from_dict(data)
