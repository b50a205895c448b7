"""``export_subnet``: export one subnet of a trained supernet as a zipped bundle (`nas.export`).

The subnet is BN-recalibrated on the supernet's training data (the protocol of its evaluations)
and scored on the test split from the bundle itself, so the accuracy the service shows beside the
subnet is the delivered file's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from store.artifacts import StoredFile, register_artifact
from store.models import Subnet
from store.queue import Lease
from workers.kinds.base import TypedJobKind, WorkContext, register_job_kind
from workers.kinds.supernets import CheckpointInputs, checkpoint_inputs, load_supernet


class ExportParams(BaseModel):
    """Parameters of an ``export_subnet`` job."""

    model_config = ConfigDict(extra="forbid")

    supernet_id: int = Field(ge=1)
    arch: dict[str, Any] | Literal["min", "max"] = Field(description="the subnet, or the space's min/max")


class ExportOutcome(BaseModel):
    """The result of an ``export_subnet`` job: the bundle's file, the subnet, its MACs and the bundle's top-1."""

    file: StoredFile
    arch: dict[str, Any]
    arch_key: str
    macs: int
    accuracy: float


@register_job_kind("export_subnet")
class ExportSubnetJob(TypedJobKind[ExportParams, CheckpointInputs, ExportOutcome]):
    """Fetches the supernet's checkpoint (verified), exports the bundle, stores it, registers the subnet."""

    Params = ExportParams
    Inputs = CheckpointInputs
    Result = ExportOutcome

    def resolve(self, session: Session, lease: Lease, params: ExportParams) -> CheckpointInputs:
        """The checkpoint files of the supernet (the job's owner must own it)."""
        return checkpoint_inputs(session, lease, params.supernet_id)

    def work(self, params: ExportParams, inputs: CheckpointInputs, ctx: WorkContext) -> ExportOutcome:
        """Export and store the bundle."""
        from nas.bundle_eval import score_bundle
        from nas.cost import macs
        from nas.export import export_bundle
        from nas.train.evaluate import data_for

        net = load_supernet(inputs, ctx).supernet
        space = net.space
        if params.arch == "min":
            arch = space.min_arch()
        elif params.arch == "max":
            arch = space.max_arch()
        else:
            assert isinstance(params.arch, dict)
            arch = space.canonical(params.arch)
        ctx.progress(stage="exporting")
        path = export_bundle(net, arch, ctx.run_dir / "bundle.zip", calibration="training_data", archive=True)
        ctx.progress(stage="scoring")
        test = data_for(net)[1]["test"]
        accuracy = score_bundle(path, test.images, test.labels).top1
        stored = ctx.store.put(f"jobs/{ctx.job_id}/bundle.zip", path)
        return ExportOutcome(file=stored, arch=arch, arch_key=space.key(arch), macs=int(macs(space, arch)),
                             accuracy=accuracy)  # fmt: skip

    def record(self, session: Session, lease: Lease, params: ExportParams, result: ExportOutcome) -> dict[str, Any]:
        """Register the bundle and the subnet."""
        artifact = register_artifact(session, result.file, kind="bundle", job_id=lease.job_id, user_id=lease.user_id)
        subnet = Subnet(
            user_id=lease.user_id, supernet_id=params.supernet_id, arch_key=result.arch_key, arch=result.arch,
            validated={"accuracy": result.accuracy, "macs": result.macs}, bundle_artifact_id=artifact.id,
        )  # fmt: skip
        session.add(subnet)
        session.flush()
        return {"subnet_id": subnet.id, "artifact_id": artifact.id}
