"""``train_supernet``: train a supernet (`nas.train`), resuming from the checkpoint in the job's run dir."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from store.artifacts import StoredFile, register_artifact
from store.models import Artifact, Supernet
from store.queue import Lease
from workers.kinds.base import JobError, TypedJobKind, WorkContext, register_job_kind
from workers.kinds.datasets import FileRef, dataset_file, local_dataset
from workers.kinds.supernets import checkpoint_inputs

if TYPE_CHECKING:
    from nas.train import ProgressEvent, TrainConfig, TrainRun

CHECKPOINT_PREFIX = "jobs/{job_id}/supernet/checkpoint"
PRETRAINED_KIND = "checkpoint"
"""The artefact kind of an uploaded pretrained checkpoint (``POST /v1/checkpoints``; no job made it)."""
WEIGHTS_FILE = "weights.safetensors"
"""The supernet's weights in a training checkpoint (`nas.train.checkpoint`)."""

# The training's workers (not part of the TrainConfig: a run may resume on other hardware).
Workers = Annotated[
    int, Field(ge=1, le=1024, description="Ray Train workers, data-parallel (1 on the CPU: the job's own process)")
]
Device = Annotated[
    Literal["cpu", "cuda"], Field(description="cpu (gloo), or cuda: one GPU per worker (NCCL), on Ray Train")
]
CpusPerWorker = Annotated[
    float, Field(gt=0, le=1024, description="CPUs each worker asks Ray for (its torch threads: the whole part)")
]


class TrainParams(BaseModel):
    """Parameters of a ``train_supernet`` job."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=200, description="a label for the supernet")
    config: dict[str, Any] = Field(description="a nas.train.TrainConfig (stored with the preset's defaults filled)")
    dataset_id: int | None = Field(None, description="an uploaded dataset (config.dataset is then npz)")
    workers: Workers = 1
    device: Device = "cpu"
    cpus_per_worker: CpusPerWorker = 1.0

    @property
    def on_ray_train(self) -> bool:
        """Whether the training runs under Ray Train (several workers, or GPUs) or in the job's own process."""
        return self.workers > 1 or self.device == "cuda"

    @field_validator("config")
    @classmethod
    def _valid_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        from nas.train.config import TrainConfig

        return TrainConfig.model_validate(config).model_dump(mode="json")


class TrainInputs(BaseModel):
    """The uploaded dataset's stored file, if the job trains on one; the pretrained weights' file, if any."""

    dataset: FileRef | None = None
    init: dict[str, FileRef] | None = Field(None, description="config.init_from's artefact: {file name: ref}")


class TrainOutcome(BaseModel):
    """The result of a ``train_supernet`` job: the epochs trained, their history, the checkpoint's files."""

    epochs: int
    resumed_after_epochs: int = Field(description="epochs an earlier attempt had done")
    history: list[dict[str, Any]]
    files: list[StoredFile]
    transfer: dict[str, Any] | None = Field(
        None, description="with config.init_from: tensors loaded, adapted, initialised (nas.supernet.transfer)"
    )
    restarts: int = Field(0, description="times Ray Train restarted its workers after one died")
    resumed_at: list[int] = Field(
        default_factory=list, description="for each restart, the epochs of the checkpoint the workers resumed from"
    )


@register_job_kind("train_supernet")
class TrainSupernetJob(TypedJobKind[TrainParams, TrainInputs, TrainOutcome]):
    """Trains in the job's run dir (checkpoint every epoch), then stores the final checkpoint as artefacts.

    A reclaimed job finds the checkpoint of its earlier attempt in the run dir and continues from it
    (`nas.train` resumes bit-exactly); the result records how many epochs were already done. With
    several workers or ``device=cuda`` it trains under Ray Train (`workers.ray_tasks.train`), whose
    workers restart from that checkpoint when one of them dies; the result counts the restarts.
    """

    Params = TrainParams
    Inputs = TrainInputs
    Result = TrainOutcome

    def ray_cpus(self, params: TrainParams) -> float:
        """No CPUs under Ray Train (its workers ask for theirs); else the one worker's CPUs."""
        return 0.0 if params.on_ray_train else params.cpus_per_worker

    def resolve(self, session: Session, lease: Lease, params: TrainParams) -> TrainInputs:
        """The uploaded dataset's file and the pretrained weights' (the job's owner must own both)."""
        return TrainInputs(
            dataset=None if params.dataset_id is None else dataset_file(session, lease, params.dataset_id),
            init=pretrained_files(session, lease, params.config.get("init_from")),
        )

    def work(self, params: TrainParams, inputs: TrainInputs, ctx: WorkContext) -> TrainOutcome:
        """Train (or finish training) and store the checkpoint; an uploaded dataset is read from its local copy."""
        from nas.train import TrainConfig
        from nas.train.checkpoint import find_checkpoint
        from nas.train.config import InitFrom
        from workers.ray_tasks.train import checkpoint_epochs

        out = ctx.run_dir / "train"
        found = find_checkpoint(out)
        done = checkpoint_epochs(out)
        if done:
            ctx.log(f"attempt {ctx.attempt}: resuming from the checkpoint written after epoch {done}")

        def report(event: ProgressEvent) -> None:
            ctx.progress(**asdict(event))

        config = TrainConfig.model_validate(params.config)
        if inputs.dataset is not None:
            config = config.model_copy(update={"data_dir": str(local_dataset(inputs.dataset, ctx))})
        if inputs.init is not None:
            init_dir = ctx.run_dir / "init"
            if not found:  # a resumed run has the weights already (and the same path in its config)
                ctx.store.fetch_tree(inputs.init, init_dir)
            (name,) = inputs.init
            config = config.model_copy(update={"init_from": InitFrom(checkpoint=str(init_dir / name))})
        run, resumed_at = self._train(params, config, out, report, ctx)
        final = find_checkpoint(out)
        assert final is not None, "train_supernet returned without a checkpoint"
        stored = ctx.store.put_tree(CHECKPOINT_PREFIX.format(job_id=ctx.job_id), final)
        return TrainOutcome(
            epochs=len(run.history), resumed_after_epochs=done, history=run.history, files=stored,
            transfer=run.supernet.metadata.get("transfer"), restarts=len(resumed_at),
            resumed_at=resumed_at,
        )  # fmt: skip

    def _train(
        self,
        params: TrainParams,
        config: TrainConfig,
        out: Path,
        report: Callable[[ProgressEvent], None],
        ctx: WorkContext,
    ) -> tuple[TrainRun, list[int]]:
        """`nas.train.train_supernet` here, or on Ray Train; the run, and the epochs each restart resumed after."""
        from nas.train import train_supernet
        from workers.ray_tasks.train import train_supernet_on_ray

        if not params.on_ray_train:
            return train_supernet(config, out, progress=report), []
        starts: list[int] = []

        def started(epochs: int) -> None:
            if starts:
                ctx.log(f"a Ray Train worker died; the workers restarted from the checkpoint after epoch {epochs}")
            starts.append(epochs)

        ctx.log(f"training on Ray Train: {params.workers} {params.device} worker(s), "
                f"{params.cpus_per_worker:g} CPU(s) each")  # fmt: skip
        run = train_supernet_on_ray(
            config, out, num_workers=params.workers, use_gpu=params.device == "cuda",
            cpus_per_worker=params.cpus_per_worker, progress=report, on_start=started,
        )  # fmt: skip
        return run, starts[1:]

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
            metrics={"epochs": len(history), "final_loss": history[-1]["loss"] if history else None}
            | ({} if result.transfer is None else {"transfer": result.transfer}),
            checkpoint=checkpoint,
        )  # fmt: skip
        session.add(supernet)
        session.flush()
        return {"supernet_id": supernet.id}


def pretrained_files(session: Session, lease: Lease, init_from: dict[str, Any] | None) -> dict[str, FileRef] | None:
    """The file to fetch for ``config.init_from``: an uploaded checkpoint, or an earlier supernet's weights.

    None for no ``init_from`` or a server path (``checkpoint``, read where it is).

    Raises:
        JobError: ``not_found`` (no such uploaded checkpoint or supernet, or another user's) or
            ``not_ready`` (the supernet has no checkpoint yet).
    """
    if init_from is None or init_from.get("checkpoint") is not None:
        return None
    if init_from.get("supernet_id") is not None:
        weights = checkpoint_inputs(session, lease, init_from["supernet_id"]).checkpoint[WEIGHTS_FILE]
        return {WEIGHTS_FILE: weights}
    ident = init_from["artifact_id"]
    artifact = session.get(Artifact, ident)
    if (
        artifact is None
        or artifact.kind != PRETRAINED_KIND
        or artifact.job_id is not None
        or (lease.user_id is not None and artifact.user_id != lease.user_id)
    ):
        raise JobError("not_found", f"init_from.artifact_id {ident}: no such uploaded checkpoint")
    return {"pretrained.safetensors": (artifact.key, artifact.sha256)}
