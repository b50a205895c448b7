"""``train_supernet``: train a supernet (`nas.train`), resuming from the checkpoint in the job's run dir."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from store.artifacts import StoredFile, register_artifact
from store.models import Supernet
from store.queue import Lease
from workers.kinds.base import TypedJobKind, WorkContext, register_job_kind
from workers.kinds.datasets import FileRef, dataset_file, local_dataset

CHECKPOINT_PREFIX = "jobs/{job_id}/supernet/checkpoint"


class TrainParams(BaseModel):
    """Parameters of a ``train_supernet`` job."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200, description="a label for the supernet")
    config: dict[str, Any] = Field(description="a nas.train.TrainConfig (stored with the preset's defaults filled)")
    dataset_id: int | None = Field(None, description="an uploaded dataset (config.dataset is then npz)")

    @field_validator("config")
    @classmethod
    def _valid_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        from nas.train.config import TrainConfig

        return TrainConfig.model_validate(config).model_dump(mode="json")


class TrainInputs(BaseModel):
    """The uploaded dataset's stored file, if the job trains on one."""

    dataset: FileRef | None = None


class TrainOutcome(BaseModel):
    """The result of a ``train_supernet`` job: the epochs trained, their history, the checkpoint's files."""

    epochs: int
    resumed_after_epochs: int = Field(description="epochs an earlier attempt had done")
    history: list[dict[str, Any]]
    files: list[StoredFile]


@register_job_kind("train_supernet")
class TrainSupernetJob(TypedJobKind[TrainParams, TrainInputs, TrainOutcome]):
    """Trains in the job's run dir (checkpoint every epoch), then stores the final checkpoint as artefacts.

    A reclaimed job finds the checkpoint of its earlier attempt in the run dir and continues from it
    (`nas.train` resumes bit-exactly); the result records how many epochs were already done.
    """

    Params = TrainParams
    Inputs = TrainInputs
    Result = TrainOutcome

    def resolve(self, session: Session, lease: Lease, params: TrainParams) -> TrainInputs:
        """The uploaded dataset's file (the job's owner must own the dataset)."""
        return TrainInputs(
            dataset=None if params.dataset_id is None else dataset_file(session, lease, params.dataset_id)
        )

    def work(self, params: TrainParams, inputs: TrainInputs, ctx: WorkContext) -> TrainOutcome:
        """Train (or finish training) and store the checkpoint; an uploaded dataset is read from its local copy."""
        from nas.train import ProgressEvent, TrainConfig, train_supernet
        from nas.train.checkpoint import find_checkpoint

        out = ctx.run_dir / "train"
        found = find_checkpoint(out)
        done = len(json.loads((found / "state.json").read_text())["state"]["history"]) if found else 0
        if done:
            ctx.log(f"attempt {ctx.attempt}: resuming from the checkpoint written after epoch {done}")

        def report(event: ProgressEvent) -> None:
            ctx.progress(**asdict(event))

        config = TrainConfig.model_validate(params.config)
        if inputs.dataset is not None:
            config = config.model_copy(update={"data_dir": str(local_dataset(inputs.dataset, ctx))})
        run = train_supernet(config, out, progress=report)
        final = find_checkpoint(out)
        assert final is not None, "train_supernet returned without a checkpoint"
        stored = ctx.store.put_tree(CHECKPOINT_PREFIX.format(job_id=ctx.job_id), final)
        return TrainOutcome(epochs=len(run.history), resumed_after_epochs=done, history=run.history, files=stored)

    def record(self, session: Session, lease: Lease, params: TrainParams, result: TrainOutcome) -> dict[str, Any]:
        """Register the checkpoint's artefacts and the supernet."""
        prefix = CHECKPOINT_PREFIX.format(job_id=lease.job_id) + "/"
        checkpoint = {}
        for file in result.files:
            row = register_artifact(session, file, kind="checkpoint", job_id=lease.job_id, user_id=lease.user_id)
            checkpoint[row.key.removeprefix(prefix)] = row.id
        history = result.history
        supernet = Supernet(
            user_id=lease.user_id, job_id=lease.job_id, name=params.name, space=params.config["space"],
            dataset=params.config["dataset"] if params.dataset_id is None else f"dataset:{params.dataset_id}",
            dataset_id=params.dataset_id, strategy=params.config["strategy"], config=params.config,
            metrics={"epochs": len(history), "final_loss": history[-1]["loss"] if history else None},
            checkpoint=checkpoint,
        )  # fmt: skip
        session.add(supernet)
        session.flush()
        return {"supernet_id": supernet.id}
