"""``/v1/checkpoints``: upload a pretrained checkpoint (checked before it is accepted), read yours."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Context, CurrentUser
from api.errors import ERROR_RESPONSES
from api.routes.params import ResourceId
from api.routes.uploads import BINARY_BODY, receive_body
from api.schemas.checkpoints import CheckpointOut
from api.services import checkpoints

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"], responses=ERROR_RESPONSES)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the checkpoint: a PyTorch .pth (OFA's format, loaded weights-only) or a safetensors file",
        "content": {"application/octet-stream": BINARY_BODY},
    }
}


@router.post(
    "",
    status_code=201,
    openapi_extra=_UPLOAD_BODY,
    responses={200: {"description": "you had uploaded the same file: that checkpoint", "model": CheckpointOut}},
)
async def upload_checkpoint(request: Request, response: Response, ctx: Context, user: CurrentUser) -> CheckpointOut:
    """Upload a pretrained supernet's weights as the request body; checked and stored before the answer.

    Accepted: the state dict of a registered space's supernet (e.g. OFA's released
    ``ofa_mbv3_d234_e346_k357_w1.0`` ImageNet checkpoint, ``{"state_dict": ...}`` or bare, current
    or legacy key names), as a torch file (read with the weights-only loader: nothing else is
    unpickled) or safetensors. Start a training from it with ``config.init_from.artifact_id`` in
    ``POST /v1/supernets``. An unreadable or corrupt file, one holding other objects, or weights
    that fit no registered space answer 422 naming ``body``, and nothing is stored.
    """
    scratch_root = ctx.settings.home_dir / "uploads"
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root) as scratch:
        upload = await receive_body(request, Path(scratch) / "upload", "the checkpoint file")
        checkpoint, created = await run_in_threadpool(checkpoints.ingest, ctx, user, upload)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/checkpoints/{checkpoint.id}"
    return checkpoint


@router.get("/{checkpoint_id}")
def get_checkpoint(checkpoint_id: ResourceId, ctx: Context, user: CurrentUser) -> CheckpointOut:
    """One uploaded checkpoint: the space it fits, its input channels and classes."""
    return checkpoints.user_checkpoint(ctx, user, checkpoint_id)
