"""Datasets for the API: an upload validated and stored before it is accepted; a user's datasets; data roots.

An upload is read with `nas.data.archive` (members checked before extraction, sizes bounded, the
same loaders as datasets on disk), then stored as the one ``.npz`` form workers load. Server paths
in a training request are accepted only inside the operator's data roots (``HWNAS_DATA_ROOTS``),
and a refusal says nothing about what exists on the server.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.context import ServiceContext
from api.errors import invalid
from api.schemas.datasets import MAX_CLASSES_SHOWN, DatasetOut, UploadFormat
from api.services.ownership import owned
from api.services.pages import paginate
from store.artifacts import register_artifact
from store.artifacts.base import file_sha256
from store.models import Artifact, Dataset, User

DATASET_ARTIFACT_KIND = "dataset"
MAX_CLASS_NAME = 200
"""The longest class name accepted (names are stored and shown with the dataset)."""


def ingest(
    ctx: ServiceContext, user: User, upload: Path, name: str, format: UploadFormat | None
) -> tuple[DatasetOut, bool]:
    """Validate an uploaded dataset file and store it; the same file uploaded again returns the first dataset.

    Args:
        ctx: the service.
        user: the uploader (the owner).
        upload: the uploaded file (a scratch copy the caller removes).
        name: a label.
        format: ``npz``, ``imagefolder``, ``idx``, or None to detect it.

    Returns:
        The stored dataset and whether it was created (False: this user had uploaded the same bytes).

    Raises:
        ApiError: 422 naming ``body`` when the file is not an acceptable dataset (the message says
            why, in terms of the archive's members).
    """
    from nas.data.archive import ArchiveLimits, DatasetFileError, read_dataset_file, write_dataset_npz

    digest = file_sha256(upload)
    with ctx.db.reader() as s:
        known = s.scalars(select(Dataset).where(Dataset.user_id == user.id, Dataset.upload_sha256 == digest)).first()
        if known is not None:
            return _outs(s, [known])[0], False
    try:
        data, found = read_dataset_file(upload, format, limits=ArchiveLimits(max_bytes=ctx.settings.max_dataset_bytes))
    except DatasetFileError as error:
        raise invalid("body", str(error)) from None
    long_names = [label for label in data.classes if len(label) > MAX_CLASS_NAME]
    if long_names:
        raise invalid("body", f"{len(long_names)} class names are over {MAX_CLASS_NAME} characters; shorten them")
    canonical = upload.with_name(upload.name + ".npz")
    write_dataset_npz(data, canonical)
    stored = ctx.store.put(f"datasets/user-{user.id}/{digest}.npz", canonical)
    info = {
        "train_images": len(data.train_labels), "test_images": len(data.test_labels), "image_size": data.image_size,
        "channels": data.channels, "num_classes": data.num_classes, "classes": list(data.classes[:MAX_CLASSES_SHOWN]),
        "hflip": data.hflip,
    }  # fmt: skip
    with ctx.db.session() as s:
        artifact = register_artifact(s, stored, kind=DATASET_ARTIFACT_KIND, user_id=user.id)
        row = Dataset(user_id=user.id, name=name, format=found, upload_sha256=digest, upload_size=upload.stat().st_size,
                      artifact_id=artifact.id, info=info)  # fmt: skip
        s.add(row)
        s.flush()
        return _out(row, artifact), True


def _out(row: Dataset, artifact: Artifact) -> DatasetOut:
    """The API view of a dataset row and its stored file."""
    return DatasetOut(
        id=row.id, name=row.name, format=row.format, upload_sha256=row.upload_sha256, upload_size=row.upload_size,
        sha256=artifact.sha256, created_at=row.created_at, **row.info,
    )  # fmt: skip


def _outs(s: Session, rows: Sequence[Dataset]) -> list[DatasetOut]:
    """The API views of dataset rows, their stored files read in one query."""
    ids = [row.artifact_id for row in rows]
    artifacts = {a.id: a for a in s.scalars(select(Artifact).where(Artifact.id.in_(ids)))} if ids else {}
    return [_out(row, artifacts[row.artifact_id]) for row in rows]


def list_datasets(
    ctx: ServiceContext, user: User, size: int, token: str | None
) -> tuple[list[DatasetOut], str | None]:
    """One page of the user's datasets, newest first, and the next page's token."""
    with ctx.db.reader() as s:
        rows, next_token = paginate(s, select(Dataset).where(Dataset.user_id == user.id), Dataset.id, size, token)
        return _outs(s, rows), next_token


def user_dataset(ctx: ServiceContext, user: User, dataset_id: int, field: str | None = None) -> DatasetOut:
    """The user's dataset.

    Raises:
        ApiError: 404 when there is no such dataset or it is another user's (naming `field` if given).
    """
    with ctx.db.reader() as s:
        return _outs(s, [owned(s, Dataset, dataset_id, user, field)])[0]


def server_data_path(ctx: ServiceContext, data_dir: str, field: str) -> str:
    """`data_dir` resolved (links and ``..`` followed) when it lies inside a configured data root.

    Whether the path exists is not checked here (the worker reports that, in terms of the roots).

    Raises:
        ApiError: 422 naming `field` when no data roots are configured or the path is outside them;
            the message names the roots, never the resolved path.
    """
    roots = ctx.settings.resolved_data_roots
    if not roots:
        raise invalid(field, "this service accepts no server paths; upload the dataset (POST /v1/datasets, "
                             "`hwnas dataset upload FILE`) and train with dataset_id")  # fmt: skip
    candidate = Path(data_dir).expanduser()
    resolved = Path(os.path.realpath(candidate if candidate.is_absolute() else roots[0] / candidate))
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise invalid(field, f"server paths must lie inside a data root ({allowed}); upload other data instead")
    return str(resolved)
