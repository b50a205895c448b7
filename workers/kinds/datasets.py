"""Uploaded datasets in jobs: the stored ``.npz`` resolved in SQL, fetched once per node to a content-addressed file.

Every job on a node finds an uploaded dataset at the same path (``<runs>/datasets/<sha256>.npz``),
so the path a training run records in its checkpoint is the one later jobs (searches, exports, the
Ray tasks they start) load from.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy.orm import Session

from store.artifacts.base import CHUNK, file_sha256
from store.models import Artifact, Dataset
from store.queue import Lease
from workers.kinds.base import JobError, WorkContext

FileRef = tuple[str, str]
"""An artefact's key and sha256."""


def dataset_file(session: Session, lease: Lease, dataset_id: int) -> FileRef:
    """The stored ``.npz`` of an uploaded dataset the job's owner owns.

    Raises:
        JobError: ``not_found`` (no such dataset, or another user's).
    """
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or (lease.user_id is not None and dataset.user_id != lease.user_id):
        raise JobError("not_found", f"dataset_id {dataset_id}: no such dataset")
    artifact = session.get(Artifact, dataset.artifact_id)
    assert artifact is not None, "a dataset row always has its artefact (ondelete RESTRICT)"
    return artifact.key, artifact.sha256


def local_dataset(ref: FileRef, ctx: WorkContext) -> Path:
    """The dataset's file on this node, fetched (and verified) unless an intact copy is there already."""
    key, sha256 = ref
    path = ctx.run_dir.parent / "datasets" / f"{sha256}.npz"
    if path.is_file() and file_sha256(path) == sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    with ctx.store.open(key, sha256) as src, partial.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
    partial.replace(path)  # atomic: a concurrent job sees the old file or the whole new one
    return path
