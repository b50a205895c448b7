"""Pretrained checkpoints for the API: an upload checked before it is stored; reading a stored one's facts.

An upload is loaded without unpickling code (`nas.supernet.transfer.read_pretrained`: safetensors, or
torch's weights-only loader), must be the state dict of a registered space's supernet, and is stored
as safetensors with what it is (space, input channels, classes) in the file's metadata, so that a
training request is checked against it without loading the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from api.context import ServiceContext
from api.errors import invalid, not_found
from api.schemas.checkpoints import CheckpointOut
from store.artifacts import register_artifact
from store.artifacts.base import file_sha256
from store.models import Artifact, User
from workers.kinds.train import PRETRAINED_KIND

MAX_HEADER_BYTES = 100 << 20
"""The largest safetensors header read back (the stored files are ours; this bounds a damaged one)."""


def ingest(ctx: ServiceContext, user: User, upload: Path) -> tuple[CheckpointOut, bool]:
    """Check an uploaded checkpoint and store it; the same file uploaded again returns the first one.

    Returns:
        The stored checkpoint and whether it was created (False: this user had uploaded the same bytes).

    Raises:
        ApiError: 422 naming ``body`` when the file is unreadable, corrupt, not a state dict of
            tensors, or fits no registered space (the message says why); nothing is stored then.
    """
    from nas.supernet.transfer import identify_pretrained, read_pretrained, save_pretrained

    key = f"checkpoints/user-{user.id}/{file_sha256(upload)}.safetensors"
    with ctx.db.reader() as s:
        known = s.scalars(select(Artifact).where(Artifact.key == key)).first()
        if known is not None:
            return checkpoint_out(ctx, known), False
    try:
        state = read_pretrained(upload)
        info = identify_pretrained(state)
    except ValueError as error:
        raise invalid("body", str(error)) from None
    canonical = upload.with_name(upload.name + ".safetensors")
    save_pretrained(state, info, canonical)
    stored = ctx.store.put(key, canonical)
    with ctx.db.session() as s:
        row = register_artifact(s, stored, kind=PRETRAINED_KIND, user_id=user.id)
        return checkpoint_out(ctx, row), True


def user_checkpoint(ctx: ServiceContext, user: User, artifact_id: int, field: str | None = None) -> CheckpointOut:
    """The user's uploaded checkpoint.

    Raises:
        ApiError: 404 (naming `field` if given) when there is no such artefact, it is another
            user's, or it is not an uploaded checkpoint (e.g. a training run's file).
    """
    with ctx.db.reader() as s:
        row = s.get(Artifact, artifact_id)
        if row is None or row.user_id != user.id or row.kind != PRETRAINED_KIND or row.job_id is not None:
            raise not_found("checkpoint", artifact_id, field)
        return checkpoint_out(ctx, row)


def checkpoint_out(ctx: ServiceContext, row: Artifact) -> CheckpointOut:
    """The API view of a stored checkpoint: the facts in its safetensors header (the weights are not read)."""
    with ctx.store.open(row.key) as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(min(size, MAX_HEADER_BYTES)))
    meta = header["__metadata__"]
    return CheckpointOut(
        id=row.id, space=meta["space"], in_channels=int(meta["in_channels"]), num_classes=int(meta["num_classes"]),
        tensors=int(meta["tensors"]), sha256=row.sha256, size=row.size, created_at=row.created_at,
    )  # fmt: skip
