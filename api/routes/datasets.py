"""``/v1/datasets``: upload a dataset (validated before it is accepted), list and read yours."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Context, CurrentUser, Page
from api.errors import ERROR_RESPONSES
from api.routes.params import ResourceId
from api.routes.uploads import BINARY_BODY, receive_body
from api.schemas.base import Page as PageOut
from api.schemas.datasets import DatasetOut, UploadFormat
from api.services import datasets

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the dataset file: a .npz, an ImageFolder zip or a zip of the four IDX files",
        "content": {"application/octet-stream": BINARY_BODY, "application/zip": BINARY_BODY},
    }
}


@router.post(
    "",
    status_code=201,
    openapi_extra=_UPLOAD_BODY,
    responses={200: {"description": "you had uploaded the same file: that dataset", "model": DatasetOut}},
)
async def upload_dataset(
    request: Request,
    response: Response,
    ctx: Context,
    user: CurrentUser,
    name: Annotated[str, Query(max_length=200, description="a label for the dataset")] = "",
    format: Annotated[UploadFormat | None, Query(description="what the file is (default: detected)")] = None,
) -> DatasetOut:
    """Upload a dataset as the request body; it is validated and stored before the answer.

    Accepted: a ``.npz`` (``x``, ``y`` [, ``x_test``, ``y_test``, ``classes``, ``hflip``]); a zip of
    ``train/<class>/`` and ``test/<class>/`` images; a zip of the four IDX files (raw or ``.gz``).
    Train on it with ``dataset_id`` in ``POST /v1/supernets``. A file that is not a dataset, unsafe
    archive members (absolute paths, ``..``, links) and archives that expand past the service's
    limit answer 422 naming ``body``.
    """
    scratch_root = ctx.settings.home_dir / "uploads"
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root) as scratch:
        upload = await receive_body(request, Path(scratch) / "upload", "the dataset file")
        dataset, created = await run_in_threadpool(datasets.ingest, ctx, user, upload, name, format)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset


@router.get("")
def list_datasets(ctx: Context, user: CurrentUser, page: Page) -> PageOut[DatasetOut]:
    """Your uploaded datasets, newest first."""
    items, token = datasets.list_datasets(ctx, user, page.page_size, page.page_token)
    return PageOut[DatasetOut](items=items, next_page_token=token)


@router.get("/{dataset_id}")
def get_dataset(dataset_id: ResourceId, ctx: Context, user: CurrentUser) -> DatasetOut:
    """One uploaded dataset: what was uploaded, what was stored, its images and classes."""
    return datasets.user_dataset(ctx, user, dataset_id)
