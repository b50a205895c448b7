"""Subnets for the API: a user's subnet, the files of its exported bundle, and queueing its fine-tuning."""

from __future__ import annotations

import io
import json
import zipfile

from api.context import ServiceContext
from api.errors import ApiError
from api.services import jobs, targets
from api.services.ownership import owned
from store.artifacts import read_artifact
from store.models import Artifact, Job, Subnet, Supernet, User
from workers.kinds.finetune import FinetuneParams, FinetuneRequest, default_targets

FINETUNE_JOB_KIND = "finetune_subnet"

MEMBERS = {"onnx": "model.onnx", "safetensors": "weights.safetensors"}
"""The bundle member of each single-file download format (nas.export's ONNX_FILE and WEIGHTS_FILE; it imports torch)."""
META = "arch.json"
"""The bundle member that records the other members' sha256 (nas.export's META_FILE)."""


def user_subnet(ctx: ServiceContext, user: User, subnet_id: int) -> Subnet:
    """The user's subnet.

    Raises:
        ApiError: 404 when there is no such subnet or it is another user's.
    """
    with ctx.db.reader() as s:
        return owned(s, Subnet, subnet_id, user)


def bundle(ctx: ServiceContext, user: User, subnet_id: int) -> Artifact:
    """The artefact of the user's subnet's exported bundle (a zip).

    Raises:
        ApiError: 404 as `user_subnet`; 409 ``not_ready`` when the subnet has not been exported.
    """
    with ctx.db.reader() as s:
        row = owned(s, Subnet, subnet_id, user)
        artifact = s.get(Artifact, row.bundle_artifact_id) if row.bundle_artifact_id is not None else None
    if artifact is None:
        raise ApiError(409, "not_ready", f"subnet {subnet_id} has not been exported yet")
    return artifact


def bundle_member(ctx: ServiceContext, artifact: Artifact, fmt: str) -> tuple[bytes, str]:
    """The bytes of a bundle's member for download format `fmt` (a key of `MEMBERS`) and their recorded sha256."""
    with zipfile.ZipFile(io.BytesIO(read_artifact(ctx.store, artifact))) as zf:
        data = zf.read(MEMBERS[fmt])
        digest = json.loads(zf.read(META))["sha256"][MEMBERS[fmt]]
    return data, str(digest)


def finetune(
    ctx: ServiceContext, user: User, subnet_id: int, request: FinetuneRequest, key: str | None
) -> tuple[Job, bool]:
    """Queue the fine-tuning of the user's subnet (idempotent with `key`); returns the job and whether it was created.

    The targets are resolved now (the request's, else `default_targets`), so the job's parameters
    say where it measures. Nothing is stored unless the request is accepted.

    Raises:
        ApiError: 404 for a subnet or target the user does not have; 409 ``not_ready`` when the
            subnet's supernet has no checkpoint (still training, or failed).
        store.queue.IdempotencyConflictError: `key` was used for another request.
    """
    with ctx.db.reader() as s:
        row = owned(s, Subnet, subnet_id, user)
        supernet = s.get(Supernet, row.supernet_id)
        if supernet is None or not supernet.checkpoint:
            raise ApiError(409, "not_ready", f"subnet {subnet_id}: its supernet {row.supernet_id} has no checkpoint "
                           "to fine-tune from (it is still training, or its training failed)")  # fmt: skip
        names = request.targets or default_targets(s, row)
        for name in names:
            targets.get_target(s, user, name, "targets")
    params = FinetuneParams(**request.model_dump(exclude={"targets"}), targets=names, subnet_id=subnet_id)
    return jobs.submit(ctx, user, FINETUNE_JOB_KIND, params.model_dump(mode="json"), key)
