"""``finetune_subnet``: fine-tune a delivered subnet (`nas.train.finetune`) and deliver the result as a new subnet.

The job loads the parent subnet's supernet checkpoint, fine-tunes the subnet from the supernet's
weights with distillation from its largest subnet (checkpointing every epoch in the run dir, so a
reclaimed job resumes), exports it as a BN-recalibrated bundle whose arch.json records the
fine-tuning, and validates that bundle as a search validates its front: top-1 of the bundle's ONNX
model on the test split with its own preprocessing (`nas.bundle_eval.score_bundle`), latency
measured end to end on its ONNX file on each target's device. The new `Subnet` row (same supernet
and arch, ``parent_id`` the parent, no search) is written only when the job succeeds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session

from nas.finetune_config import FinetuneConfig
from predictors.search_spec import MeasureSettingsDict
from store.artifacts import StoredFile, register_artifact
from store.models import Search, Subnet
from store.queue import Lease
from workers.kinds.base import JobError, TypedJobKind, WorkContext, register_job_kind
from workers.kinds.latency import (
    DeviceTarget,
    device_errors,
    find_target,
    local_targets,
    measuring_resources,
    target_device,
)
from workers.kinds.supernets import CheckpointInputs, checkpoint_inputs, load_supernet

DEFAULT_TARGET = "cpu-ort"
"""The target a fine-tuned subnet's latency is measured on when its parent came from no search."""


class FinetuneRequest(FinetuneConfig):
    """A fine-tuning request (the body of ``POST /v1/subnets/{id}/finetune``): the options and where to measure."""

    targets: list[str] | None = Field(
        None, max_length=8, description="targets to measure the latency on (default: the parent's search's "
        "targets measured by the cluster, else cpu-ort)",
    )  # fmt: skip
    measure: MeasureSettingsDict = Field(
        default_factory=dict, validate_default=True,
        description="predictors.latency.MeasureSettings fields (default: its defaults)",
    )  # fmt: skip

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[str] | None) -> list[str] | None:
        if targets is not None and len(set(targets)) != len(targets):
            raise ValueError(f"targets are repeated: {targets}")
        return targets

    def config(self) -> FinetuneConfig:
        """The fine-tuning options alone."""
        return FinetuneConfig.model_validate(self.model_dump(include=set(FinetuneConfig.model_fields)))


class FinetuneParams(FinetuneRequest):
    """Parameters of a ``finetune_subnet`` job."""

    subnet_id: int = Field(ge=1, description="the subnet to fine-tune (the job's owner's)")


def default_targets(session: Session, subnet: Subnet) -> list[str]:
    """Where a fine-tuned `subnet` is measured by default: its search's cluster targets, else `DEFAULT_TARGET`."""
    search = session.get(Search, subnet.search_id) if subnet.search_id is not None else None
    return (local_targets(search.targets) if search is not None else []) or [DEFAULT_TARGET]


class FinetuneInputs(CheckpointInputs):
    """The supernet's checkpoint, the parent subnet, and the targets to measure on."""

    supernet_id: int
    arch: dict[str, Any]
    targets: dict[str, DeviceTarget]


class FinetuneOutcome(BaseModel):
    """The result of a ``finetune_subnet`` job: the bundle's file, its validated figures and the training history."""

    file: StoredFile
    supernet_id: int
    arch: dict[str, Any]
    arch_key: str
    validated: dict[str, float]
    sources: dict[str, str]
    val_top1_before: float = Field(description="the parent's BN-recalibrated validation top-1 before fine-tuning")
    history: list[dict[str, Any]]
    resumed_after_epochs: int


@register_job_kind("finetune_subnet")
class FinetuneSubnetJob(TypedJobKind[FinetuneParams, FinetuneInputs, FinetuneOutcome]):
    """Fine-tunes, exports and validates the subnet's bundle, then registers it as a new subnet of the supernet."""

    Params = FinetuneParams
    Inputs = FinetuneInputs
    Result = FinetuneOutcome

    def ray_resources(self, params: FinetuneParams) -> dict[str, float]:
        """The resources of the cluster targets the job measures on."""
        return measuring_resources(params.targets or [DEFAULT_TARGET])

    def resolve(self, session: Session, lease: Lease, params: FinetuneParams) -> FinetuneInputs:
        """The parent subnet, its supernet's checkpoint and the targets (the job's owner must own them).

        Raises:
            JobError: ``not_found`` for a subnet, supernet or target of another user's or none;
                ``not_ready`` for a supernet without a checkpoint.
        """
        subnet = session.get(Subnet, params.subnet_id)
        if subnet is None or (lease.user_id is not None and subnet.user_id != lease.user_id):
            raise JobError("not_found", f"subnet_id {params.subnet_id}: no such subnet")
        targets = {name: DeviceTarget.of(find_target(session, lease, name))
                   for name in params.targets or default_targets(session, subnet)}  # fmt: skip
        return FinetuneInputs(**dict(checkpoint_inputs(session, lease, subnet.supernet_id)),
                              supernet_id=subnet.supernet_id, arch=subnet.arch, targets=targets)  # fmt: skip

    def work(self, params: FinetuneParams, inputs: FinetuneInputs, ctx: WorkContext) -> FinetuneOutcome:
        """Fine-tune (resuming from the run dir), export the bundle, score it, measure it, store it."""
        from nas.bundle_eval import score_bundle
        from nas.cost import macs
        from nas.cost import params as param_count
        from nas.export import ONNX_FILE, export_bundle, read_bundle_files
        from nas.train.evaluate import data_for
        from nas.train.finetune import FinetuneEvent, finetune_subnet
        from predictors.latency import MeasureSettings
        from predictors.latency.drift import measure_batch

        supernet = load_supernet(inputs, ctx).supernet
        config = params.config()

        def progress(event: FinetuneEvent) -> None:
            extra = {} if event.val_top1 is None else {"val_top1": event.val_top1}
            ctx.progress(stage="finetune", epoch=event.epoch, epochs=event.epochs, step=event.step, steps=event.steps,
                         loss=event.loss, **extra)  # fmt: skip

        tuned = finetune_subnet(supernet, inputs.arch, config, out_dir=ctx.run_dir / "finetune", progress=progress)
        if tuned.resumed_after_epochs:
            ctx.log(f"attempt {ctx.attempt}: resumed from the checkpoint after epoch {tuned.resumed_after_epochs}")
        ctx.progress(stage="exporting")
        record = {"parent_subnet_id": params.subnet_id, **config.model_dump(mode="json"),
                  "teacher": "largest subnet", "val_top1_before": tuned.val_top1_before,
                  "history": tuned.history}  # fmt: skip
        path = export_bundle(supernet, tuned.arch, ctx.run_dir / "bundle.zip", calibration=tuned.calibration,
                             archive=True, subnet=tuned.subnet, fine_tuning=record)  # fmt: skip
        ctx.progress(stage="scoring")
        test = data_for(supernet)[1]["test"]
        space = supernet.space
        validated = {"accuracy": score_bundle(path, test.images, test.labels).top1,
                     "macs": float(macs(space, tuned.arch)),
                     "params": float(param_count(space, tuned.arch))}  # fmt: skip
        sources = {"accuracy": "bundle_onnx_test"}
        onnx = read_bundle_files(path)[1][ONNX_FILE]
        settings = MeasureSettings.from_dict(params.measure)
        for name, target in inputs.targets.items():
            device, close = target_device(target, ctx)

            def measured(done: int, total: int, name: str = name) -> None:
                ctx.progress(stage="measure", target=name, done=done, total=total)

            try:
                with device_errors():
                    (measurement,), _ = measure_batch([onnx], device, settings, measured, label=f"finetune/{name}")
            finally:
                close()
            validated[f"latency:{name}"] = measurement.median_ms
            sources[f"latency:{name}"] = "measured"
        stored = ctx.store.put(f"jobs/{ctx.job_id}/bundle.zip", path)
        return FinetuneOutcome(
            file=stored, supernet_id=inputs.supernet_id, arch=tuned.arch, arch_key=space.key(tuned.arch),
            validated=validated, sources=sources, val_top1_before=tuned.val_top1_before, history=tuned.history,
            resumed_after_epochs=tuned.resumed_after_epochs,
        )  # fmt: skip

    def record(self, session: Session, lease: Lease, params: FinetuneParams, result: FinetuneOutcome) -> dict[str, Any]:
        """Register the bundle and the new subnet, linked to its parent."""
        artifact = register_artifact(session, result.file, kind="bundle", job_id=lease.job_id, user_id=lease.user_id)
        subnet = Subnet(
            user_id=lease.user_id, supernet_id=result.supernet_id, arch_key=result.arch_key, arch=result.arch,
            validated=result.validated, bundle_artifact_id=artifact.id, parent_id=params.subnet_id,
        )  # fmt: skip
        session.add(subnet)
        session.flush()
        return {"subnet_id": subnet.id, "parent_id": params.subnet_id, "artifact_id": artifact.id}
