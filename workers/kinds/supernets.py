"""What jobs on a trained supernet share: resolving its checkpoint in SQL and loading it in the work."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Artifact, Supernet
from store.queue import Lease
from workers.kinds.base import JobError, WorkContext
from workers.kinds.datasets import FileRef, dataset_file, local_dataset

if TYPE_CHECKING:
    from nas.train import TrainRun


class CheckpointInputs(BaseModel):
    """A supernet's checkpoint files, by name, and the uploaded dataset it was trained on (if it was)."""

    checkpoint: dict[str, FileRef]
    dataset: FileRef | None = None


def checkpoint_inputs(session: Session, lease: Lease, supernet_id: int) -> CheckpointInputs:
    """The supernet's checkpoint files as {name: (artefact key, sha256)} and its dataset; the job's owner must own it.

    Raises:
        JobError: ``not_found`` (no such supernet, or another user's) or ``not_ready`` (no checkpoint yet).
    """
    supernet = session.get(Supernet, supernet_id)
    if supernet is None or (lease.user_id is not None and supernet.user_id != lease.user_id):
        raise JobError("not_found", f"supernet_id {supernet_id}: no such supernet")
    if not supernet.checkpoint:
        raise JobError("not_ready", f"supernet_id {supernet_id}: it has no checkpoint yet")
    rows = session.scalars(select(Artifact).where(Artifact.id.in_(supernet.checkpoint.values())))
    by_id = {row.id: row for row in rows}
    return CheckpointInputs(
        checkpoint={name: (by_id[i].key, by_id[i].sha256) for name, i in supernet.checkpoint.items()},
        dataset=None if supernet.dataset_id is None else dataset_file(session, lease, supernet.dataset_id),
    )


def load_supernet(inputs: CheckpointInputs, ctx: WorkContext) -> TrainRun:
    """Fetch the checkpoint files (verifying their sha256) into the job's run dir and load the run.

    A supernet trained on an uploaded dataset reads it from this node's content-addressed copy
    (fetched here if missing): the path its training recorded, unless this worker keeps its runs
    elsewhere, in which case the loaded supernet is pointed at this worker's copy.
    """
    from nas.train import load_run

    data = None if inputs.dataset is None else local_dataset(inputs.dataset, ctx)
    local = ctx.run_dir / "supernet"
    shutil.rmtree(local, ignore_errors=True)
    ctx.store.fetch_tree(inputs.checkpoint, local / "checkpoint")
    run = load_run(local)
    if data is not None:
        run.supernet.metadata["data"]["data_dir"] = str(data)
    return run
