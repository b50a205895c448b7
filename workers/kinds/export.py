"""``export_subnet``: export one subnet of a trained supernet as a zipped bundle (`nas.export`).

The subnet is BN-recalibrated on the supernet's training data (the protocol of its evaluations)
and scored on the test split from the bundle itself, so the accuracy the service shows beside the
subnet is the delivered file's.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from store.artifacts import StoredFile, register_artifact
from store.models import Subnet
from store.queue import Lease
from workers.kinds.base import JobKind, WorkContext, register_job_kind
from workers.kinds.supernets import checkpoint_inputs, load_supernet


class ExportParams(BaseModel):
    """Parameters of an ``export_subnet`` job."""

    model_config = ConfigDict(extra="forbid")

    supernet_id: int = Field(ge=1)
    arch: dict[str, Any] | Literal["min", "max"] = Field(description="the subnet, or the space's min/max")


@register_job_kind("export_subnet")
class ExportSubnetJob(JobKind[ExportParams]):
    """Fetches the supernet's checkpoint (verified), exports the bundle, stores it, registers the subnet."""

    Params = ExportParams

    def inputs(self, session: Session, lease: Lease, params: ExportParams) -> dict[str, Any]:
        """The checkpoint files of the supernet (the job's owner must own it)."""
        return checkpoint_inputs(session, lease, params.supernet_id)

    def run(self, params: ExportParams, inputs: dict[str, Any], ctx: WorkContext) -> dict[str, Any]:
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
        meta = net.metadata
        path = export_bundle(
            net, arch, ctx.run_dir / "bundle.zip", calibration="training_data", mean=meta["mean"], std=meta["std"],
            class_names=meta["classes"], archive=True,
        )  # fmt: skip
        ctx.progress(stage="scoring")
        test = data_for(net)[1]["test"]
        accuracy = score_bundle(path, test.images, test.labels).top1
        stored = ctx.store.put(f"jobs/{ctx.job_id}/bundle.zip", path)
        return {"file": asdict(stored), "arch": arch, "arch_key": space.key(arch), "macs": int(macs(space, arch)),
                "accuracy": accuracy}  # fmt: skip

    def persist(self, session: Session, lease: Lease, params: ExportParams, result: dict[str, Any]) -> dict[str, Any]:
        """Register the bundle and the subnet."""
        artifact = register_artifact(
            session, StoredFile(**result["file"]), kind="bundle", job_id=lease.job_id, user_id=lease.user_id
        )
        subnet = Subnet(
            user_id=lease.user_id, supernet_id=params.supernet_id, arch_key=result["arch_key"], arch=result["arch"],
            validated={"accuracy": result["accuracy"], "macs": result["macs"]}, bundle_artifact_id=artifact.id,
        )  # fmt: skip
        session.add(subnet)
        session.flush()
        return {"subnet_id": subnet.id, "artifact_id": artifact.id}
