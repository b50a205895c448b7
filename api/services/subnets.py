"""Subnets for the API: a user's subnet and the files of its exported bundle."""

from __future__ import annotations

import io
import json
import zipfile

from api.context import ServiceContext
from api.errors import ApiError
from api.services.ownership import owned
from store.artifacts import read_artifact
from store.models import Artifact, Subnet, User

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
