"""Supernets for the API: a training request checked against the registries before it is queued; a user's supernets.

Checking here turns an unknown space, dataset or strategy into a 422 at submission instead of a
job that fails later in the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from api.context import ServiceContext
from api.errors import invalid
from api.schemas.supernets import SupernetCreate
from api.services.ownership import owned
from api.services.pages import paginate
from store.models import Supernet, User
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
