"""The end-to-end tests: torch on two threads at most (fast and reproducible on small CI machines), and per module a
migrated store with two users and the API on it (``ctx``, ``users``, ``client``)."""

from collections.abc import Iterator

import pytest
import torch
from fastapi.testclient import TestClient

from api.context import ServiceContext
from tests.api_helpers import Users, make_context, make_users

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceContext]:
    """A service context on a fresh store for the module."""
    context = make_context(tmp_path_factory.mktemp("e2e"), sse_poll_s=0.01)
    yield context
    context.db.dispose()


@pytest.fixture(scope="module")
def users(ctx: ServiceContext) -> Users:
    """Users a and b of the module's store, with their tokens."""
    return make_users(ctx.db)


@pytest.fixture(scope="module")
def client(ctx: ServiceContext) -> Iterator[TestClient]:
    """The API on the module's store."""
    from api.app import create_app

    with TestClient(create_app(context=ctx)) as c:
        yield c
