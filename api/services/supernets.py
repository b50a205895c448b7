"""Supernets for the API: a training request checked against the registries before it is queued; a user's supernets.

Checking here turns an unknown space, dataset or strategy into a 422 at submission instead of a
job that fails later in the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from api.context import ServiceContext
from api.errors import ApiError, invalid
from api.schemas.supernets import SupernetCreate
from api.services.checkpoints import user_checkpoint
from api.services.datasets import server_data_path
from api.services.ownership import owned
from api.services.pages import paginate
from store.models import Dataset, Supernet, User
from workers.kinds import validate_params

TRAIN_JOB_KIND = "train_supernet"
UPLOADED_DATASET_FORMAT = "npz"
"""How an uploaded dataset is stored, and so which loader trains on it."""
PATH_DATASETS = frozenset({"npz", "imagefolder", "idx"})
"""Datasets that are nothing but a path: without ``data_dir`` they have no data."""


def train_params(ctx: ServiceContext, user: User, request: SupernetCreate) -> dict[str, Any]:
    """The training job's parameters: `nas.train.TrainConfig`'s checks, the registered names, the data's place.

    An uploaded dataset (``dataset_id``) must be the user's; it is trained on as the ``npz`` it is stored
    as. A server path (``config.data_dir``) must lie inside a data root (`server_data_path`).

    The registries are imported here, not at module level: `nas.data` and `nas.train` import torch
    (which `TrainConfig`'s validation loads anyway), and the API process must start without it.

    Raises:
        pydantic.ValidationError: a field of the configuration is invalid (a 422 naming it).
        ApiError: 422 naming ``config.space``, ``config.dataset`` or ``config.strategy`` when the
            name is not registered (the message lists the registered names), ``dataset_id`` when it
            comes with ``config.dataset``, ``config.data_dir`` outside the data roots; 404 naming
            ``dataset_id`` for a dataset that is not the user's; ``config.init_from.*`` (see
            `_checked_init_from`); 409 when no cluster can place the workers (`check_placement`).
    """
    from nas.data import list_datasets
    from nas.spaces import list_spaces
    from nas.train import list_strategies

    body = request.model_dump()
    if request.dataset_id is not None:
        if {"dataset", "data_dir"} & request.config.keys():
            raise invalid("dataset_id", "give dataset_id or config.dataset (with config.data_dir), not both")
        body["config"] = {**request.config, "dataset": UPLOADED_DATASET_FORMAT}
    params = validate_params(TRAIN_JOB_KIND, body)
    config = params["config"]
    for name, registered in (("space", list_spaces()), ("dataset", list_datasets()), ("strategy", list_strategies())):
        if config[name] not in registered:
            raise invalid(f"config.{name}", f"unknown {name} {config[name]!r}; registered: {', '.join(registered)}")
    if request.dataset_id is not None:
        with ctx.db.reader() as s:
            owned(s, Dataset, request.dataset_id, user, "dataset_id")
    elif config["data_dir"] is not None:
        config["data_dir"] = server_data_path(ctx, config["data_dir"], "config.data_dir")
    elif config["dataset"] in PATH_DATASETS:
        raise invalid("config.dataset", f"{config['dataset']!r} reads a path on the server: upload the dataset "
                                        "(POST /v1/datasets) and train with dataset_id instead")  # fmt: skip
    if config["init_from"] is not None:
        config["init_from"] = _checked_init_from(ctx, user, config["init_from"], config["space"])
    check_placement(ctx, params["workers"], params["cpus_per_worker"], params["device"])
    return params


def check_placement(ctx: ServiceContext, workers: int, cpus_per_worker: float, device: str) -> None:
    """Refuse workers that no job worker's freshly reported Ray cluster can place (`workers.capacity`).

    Without a fresh report a CPU request passes (the job checks the cluster before it starts its
    workers), and a GPU request is refused: no GPU is known.

    Raises:
        ApiError: 409 ``no_gpu`` naming ``device``, or 409 ``insufficient_resources`` naming ``workers``;
            the message says what was asked and what the newest report's cluster has.
    """
    from workers.capacity import FRESH_S, Capacity, fresh_reports, unplaceable

    with ctx.db.reader() as s:
        reports = [(row.worker_id, row.reported_at, Capacity.of_report(row)) for row in fresh_reports(s)]
    gpus = int(device == "cuda")
    if not reports:
        if gpus:
            raise ApiError(409, "no_gpu", f"device=cuda: no job worker has reported a Ray cluster with a GPU in the "
                                          f"last {FRESH_S:g} s; train with device=cpu, or start a worker on a "
                                          "cluster that has GPUs", "device")  # fmt: skip
        return
    problems = [unplaceable(workers, cpus_per_worker, gpus, capacity) for _, _, capacity in reports]
    first = problems[0]
    if first is None or any(problem is None for problem in problems):
        return
    worker, at, _ = reports[0]
    message = f"{first.message} (reported by job worker {worker} at {at:%Y-%m-%d %H:%M:%S} UTC)"
    raise ApiError(409, first.code, message, "device" if first.code == "no_gpu" else "workers")


def _checked_init_from(ctx: ServiceContext, user: User, init: dict[str, Any], space: str) -> dict[str, Any]:
    """``config.init_from`` checked: the user's checkpoint or supernet, of the space trained; a path in a data root.

    Raises:
        ApiError: 404 naming the field for a checkpoint or supernet that is not the user's; 422 naming
            it for one of another space (or width), a supernet without a checkpoint, a path outside
            the data roots.
    """
    if init["checkpoint"] is not None:
        field = "config.init_from.checkpoint"
        return {**init, "checkpoint": server_data_path(ctx, init["checkpoint"], field)}
    if init["artifact_id"] is not None:
        field = "config.init_from.artifact_id"
        found = user_checkpoint(ctx, user, init["artifact_id"], field).space
    else:
        field = "config.init_from.supernet_id"
        with ctx.db.reader() as s:
            supernet = owned(s, Supernet, init["supernet_id"], user, field)
            if not supernet.checkpoint:
                raise invalid(field, f"supernet {supernet.id} has no checkpoint yet; wait for its training to end")
            found = supernet.space
    if found != space:
        raise invalid(
            field,
            f"its weights are of space {found}, and config.space is {space}: transfer needs the same space and "
            "width (train with that space, or start from a checkpoint of this one)",
        )
    return init


def list_supernets(
    ctx: ServiceContext, user: User, size: int, token: str | None
) -> tuple[Sequence[Supernet], str | None]:
    """One page of the user's trained supernets, newest first, and the next page's token."""
    with ctx.db.reader() as s:
        return paginate(s, select(Supernet).where(Supernet.user_id == user.id), Supernet.id, size, token)


def user_supernet(ctx: ServiceContext, user: User, supernet_id: int) -> Supernet:
    """The user's supernet.

    Raises:
        ApiError: 404 when there is no such supernet or it is another user's.
    """
    with ctx.db.reader() as s:
        return owned(s, Supernet, supernet_id, user)
