"""``/v1/subnets``: a subnet, its download as ONNX, safetensors or the whole bundle, and its fine-tuning."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from api.deps import Context, CurrentUser
from api.errors import ERROR_RESPONSES, ErrorBody
from api.routes.params import IdempotencyKey, ResourceId
from api.routes.responses import SHA_HEADER, accepted, stream_artifact
from api.schemas.jobs import JobOut
from api.schemas.subnets import SubnetOut
from api.services import subnets
from workers.kinds.finetune import FinetuneRequest

router = APIRouter(prefix="/v1/subnets", tags=["subnets"], responses=ERROR_RESPONSES)

MEDIA = {"onnx": "application/octet-stream", "safetensors": "application/octet-stream", "bundle": "application/zip"}


@router.get("/{subnet_id}")
def get_subnet(subnet_id: ResourceId, ctx: Context, user: CurrentUser) -> SubnetOut:
    """A subnet: arch, predicted and validated objective values, and its download link when it has a bundle."""
    row = subnets.user_subnet(ctx, user, subnet_id)
    url = f"/v1/subnets/{row.id}/download?format=onnx" if row.bundle_artifact_id is not None else None
    return SubnetOut(
        id=row.id, supernet_id=row.supernet_id, search_id=row.search_id, arch_key=row.arch_key, arch=row.arch,
        predicted=row.predicted, validated=row.validated, pareto_rank=row.pareto_rank, parent_id=row.parent_id,
        download_url=url, created_at=row.created_at,
    )  # fmt: skip


@router.post(
    "/{subnet_id}/finetune",
    status_code=202,
    responses={
        202: {"description": "queued; Location: the job, whose result names the new subnet (subnet_id)"},
        409: {"model": ErrorBody, "description": "not_ready: the subnet's supernet has no checkpoint"},
    },
)
def finetune(
    subnet_id: ResourceId,
    body: FinetuneRequest,
    response: Response,
    ctx: Context,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    """Queue a ``finetune_subnet`` job: E epochs from the supernet's weights, distilled from its largest subnet.

    The result is a new subnet (``parent_id`` this one) with its own bundle, whose accuracy and
    latency are measured on that bundle.
    """
    job, created = subnets.finetune(ctx, user, subnet_id, body, idempotency_key)
    accepted(response, f"/v1/jobs/{job.id}", created)
    return JobOut.of(job)


@router.get(
    "/{subnet_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "headers": {SHA_HEADER: {"description": "hex"}}},
        500: {"model": ErrorBody, "description": "artifact_corrupt: the stored file is damaged; nothing was sent"},
    },
)
def download(
    subnet_id: ResourceId,
    ctx: Context,
    user: CurrentUser,
    format: Annotated[Literal["onnx", "safetensors", "bundle"], Query(description="what to download")] = "onnx",
) -> StreamingResponse:
    """The subnet as ONNX, safetensors weights, or the zipped bundle (both plus arch.json); sha256 in a header.

    The stored bundle is checked against its recorded sha256 before the first byte is sent: a damaged
    one answers 500 ``artifact_corrupt`` (and is logged and counted in `/readyz`).
    """
    artifact = subnets.bundle(ctx, user, subnet_id)
    name = f"subnet-{subnet_id}"
    if format == "bundle":
        headers = {SHA_HEADER: artifact.sha256, "Content-Length": str(artifact.size),
                   "Content-Disposition": f'attachment; filename="{name}.zip"'}  # fmt: skip
        return StreamingResponse(stream_artifact(ctx.store, artifact), media_type=MEDIA[format], headers=headers)
    data, digest = subnets.bundle_member(ctx, artifact, format)
    headers = {SHA_HEADER: digest, "Content-Disposition": f'attachment; filename="{name}.{format}"'}
    return StreamingResponse(iter([data]), media_type=MEDIA[format], headers=headers)
