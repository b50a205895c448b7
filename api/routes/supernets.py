"""``/v1/supernets``: train a supernet (a job), list and read trained ones."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import Context, CurrentUser, Page
from api.errors import ERROR_RESPONSES, ErrorBody
from api.routes.params import IdempotencyKey, ResourceId
from api.routes.responses import accepted
from api.schemas.base import Page as PageOut
from api.schemas.jobs import JobOut
from api.schemas.supernets import SupernetCreate, SupernetOut
from api.services import jobs, supernets
from api.services.supernets import TRAIN_JOB_KIND, train_params
from store.models import Supernet

router = APIRouter(prefix="/v1/supernets", tags=["supernets"], responses=ERROR_RESPONSES)


@router.post(
    "",
    status_code=202,
    responses={
        202: {"description": "queued; Location: the training job"},
        409: {
            "model": ErrorBody,
            "description": "no_gpu: device=cuda, and no job worker reported a Ray cluster with a GPU; "
            "insufficient_resources: workers × cpus_per_worker (and GPUs) exceed the reported cluster, "
            "or one worker exceeds its largest node",
        },
    },
)
def create_supernet(
    body: SupernetCreate, response: Response, ctx: Context, user: CurrentUser, idempotency_key: IdempotencyKey = None
) -> JobOut:
    """Queue the training of a supernet; the job's result names the supernet (``supernet_id``) when it is done.

    The space, dataset and strategy must be registered ones (a 422 lists them otherwise). Bring your
    own data by uploading it (``POST /v1/datasets``) and passing its ``dataset_id``.

    ``workers`` > 1 or ``device=cuda`` trains data-parallel under Ray Train (``cpus_per_worker`` CPUs
    and, on cuda, one GPU per worker); a dead worker restarts the group from the last epoch's
    checkpoint. A request that the job workers' reported Ray cluster cannot place is a 409, and
    nothing is queued.
    """
    params = train_params(ctx, user, body)
    job, created = jobs.submit(ctx, user, TRAIN_JOB_KIND, params, idempotency_key)
    accepted(response, f"/v1/jobs/{job.id}", created)
    return JobOut.of(job)


def _out(row: Supernet) -> SupernetOut:
    return SupernetOut.model_validate(row, from_attributes=True)


@router.get("")
def list_supernets(ctx: Context, user: CurrentUser, page: Page) -> PageOut[SupernetOut]:
    """Your trained supernets, newest first."""
    rows, token = supernets.list_supernets(ctx, user, page.page_size, page.page_token)
    return PageOut[SupernetOut](items=[_out(r) for r in rows], next_page_token=token)


@router.get("/{supernet_id}")
def get_supernet(supernet_id: ResourceId, ctx: Context, user: CurrentUser) -> SupernetOut:
    """One trained supernet: space, data, strategy, metrics, checkpoint artefacts."""
    return _out(supernets.user_supernet(ctx, user, supernet_id))
