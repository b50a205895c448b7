"""Supernets for the API: a training request checked against the registries before it is queued.

Checking here turns an unknown space, dataset or strategy into a 422 at submission instead of a
job that fails later in the worker.
"""

from __future__ import annotations

from typing import Any

from api.errors import invalid
from api.schemas.supernets import SupernetCreate
from workers.kinds import validate_params

TRAIN_JOB_KIND = "train_supernet"


def train_params(request: SupernetCreate) -> dict[str, Any]:
    """The training job's parameters: `nas.train.TrainConfig`'s checks, then the registered names.

    The registries are imported here, not at module level: `nas.data` and `nas.train` import torch
    (which `TrainConfig`'s validation loads anyway), and the API process must start without it.

    Raises:
        pydantic.ValidationError: a field of the configuration is invalid (a 422 naming it).
        ApiError: 422 naming ``config.space``, ``config.dataset`` or ``config.strategy`` when the
            name is not registered; the message lists the registered names.
    """
    from nas.data import list_datasets
    from nas.spaces import list_spaces
    from nas.train import list_strategies

    params = validate_params(TRAIN_JOB_KIND, request.model_dump())
    config = params["config"]
    for name, registered in (("space", list_spaces()), ("dataset", list_datasets()), ("strategy", list_strategies())):
        if config[name] not in registered:
            raise invalid(f"config.{name}", f"unknown {name} {config[name]!r}; registered: {', '.join(registered)}")
    return params
