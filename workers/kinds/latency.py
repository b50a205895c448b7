"""``build_latency_table``: measure a target's per-layer lookup table for a space, and how well it predicts."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from store.artifacts import StoredFile, register_artifact
from store.models import LatencyMeasurement, LatencyTable, Target
from store.queue import Lease
from store.target_rows import row_spec, target_row
from workers.kinds.base import JobError, TypedJobKind, WorkContext, register_job_kind

TABLE_KEY = "jobs/{job_id}/latency_table.json"


def target_spec(row: Target) -> dict[str, Any]:
    """The `predictors.latency.Target` dict of a target row."""
    return row_spec(row).to_dict()


def find_target(session: Session, lease: Lease, name: str) -> Target:
    """The target row `name` that the job's owner may use (theirs or a shared one); built-ins get a row.

    Raises:
        JobError: ``not_found`` for an unknown target or another user's.
    """
    row = target_row(session, name, lease.user_id)
    if row is None or (row.user_id is not None and lease.user_id is not None and row.user_id != lease.user_id):
        raise JobError("not_found", f"target {name!r}: no such target")
    return row


class LatencyTableParams(BaseModel):
    """Parameters of a ``build_latency_table`` job."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(min_length=1, max_length=120, description="the target to measure on, e.g. cpu-ort")
    space: str = Field(description="a registered space preset (see `hwnas spaces`)")
    resolutions: list[int] | None = Field(None, description="a subset of the space's resolutions (default: all)")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="predictors.latency.MeasureSettings fields (warm-up, runs, noise threshold)"
    )
    samples: int = Field(20, ge=0, le=2_000, description="random subnets measured end to end to score the table")
    seed: int = Field(0, ge=0)

    @field_validator("space")
    @classmethod
    def _known_space(cls, space: str) -> str:
        from nas.spaces import list_spaces

        if space not in list_spaces():
            raise ValueError(f"unknown space {space!r}; registered: {list_spaces()}")
        return space

    @field_validator("settings")
    @classmethod
    def _valid_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        from predictors.latency import MeasureSettings

        return MeasureSettings.from_dict(settings).to_dict()


class TableInputs(BaseModel):
    """The target's measurement spec (a `predictors.latency.Target` dict)."""

    target: dict[str, Any]


class LatencySample(BaseModel):
    """A subnet measured end to end."""

    arch: dict[str, Any]
    arch_key: str
    ms: float


class TableOutcome(BaseModel):
    """The result of a ``build_latency_table`` job: the table's file, its quality and the end-to-end samples."""

    file: StoredFile
    quality: dict[str, Any] | None = Field(
        description="predictors.latency.LatencyMetrics on the samples, and the predicted and measured ms of each"
    )
    samples: list[LatencySample]
    entries: int


@register_job_kind("build_latency_table")
class BuildLatencyTableJob(TypedJobKind[LatencyTableParams, TableInputs, TableOutcome]):
    """Measures every layer of the space on the target (on a Ray node advertising ``target:<name>``).

    Then measures `samples` random subnets end to end, stores them as measurements, and records
    the table's quality on them (MAPE, share within ±10%, Kendall τ). Remote targets are measured
    by their device agent instead (``hwnas agent``); a job for one fails with ``remote_target``.
    """

    Params = LatencyTableParams
    Inputs = TableInputs
    Result = TableOutcome

    def ray_resources(self, params: LatencyTableParams) -> dict[str, float]:
        """One unit of the target's resource, so measurements on a node run one at a time."""
        return {f"target:{params.target}": 1.0}

    def resolve(self, session: Session, lease: Lease, params: LatencyTableParams) -> TableInputs:
        """The target's measurement spec."""
        row = find_target(session, lease, params.target)
        spec = target_spec(row)
        if spec.get("remote"):
            raise JobError("remote_target", f"target {params.target!r} is remote: its agent measures it (hwnas agent)")
        return TableInputs(target=spec)

    def work(self, params: LatencyTableParams, inputs: TableInputs, ctx: WorkContext) -> TableOutcome:
        """Build the table and score it on end-to-end measurements."""
        from nas.spaces import get_space
        from predictors.latency import LookupTable, MeasureSettings, Target, measure_onnx
        from predictors.latency.learned import latency_metrics
        from predictors.latency.models import subnet_onnx

        target = Target.from_dict(inputs.target)
        ok, why = target.availability()
        if not ok:
            raise JobError("target_unavailable", f"target {target.name!r} cannot be measured here: {why}")
        space = get_space(params.space)
        settings = MeasureSettings.from_dict(params.settings)
        step = 0

        def progress(done: int, total: int, key: str) -> None:
            nonlocal step
            if done * 20 // total > step or done == total:  # ~20 events per table
                step = done * 20 // total
                ctx.progress(stage="table", done=done, total=total, layer=key)

        table = LookupTable.build(space, target, params.resolutions, progress=progress, settings=settings)
        archs = space.sample(params.seed, params.samples) if params.samples else []
        archs = [a for a in archs if a["r"] in table.resolutions]
        measured = []
        for i, arch in enumerate(archs):
            ctx.progress(stage="end_to_end", done=i, total=len(archs))
            measured.append(measure_onnx(subnet_onnx(space, arch), target, settings).median_ms)
        predicted = [float(ms) for ms in table.predict(archs)] if archs else []
        quality = None
        if len(archs) > 1:  # the pairs too, for a predicted-vs-measured plot
            quality = {**asdict(latency_metrics(predicted, measured)), "predicted": predicted, "measured": measured}
        stored = ctx.store.put(TABLE_KEY.format(job_id=ctx.job_id), json.dumps(table.to_dict()).encode())
        samples = [LatencySample(arch=a, arch_key=space.key(a), ms=ms) for a, ms in zip(archs, measured, strict=True)]
        entries = sum(len(e) for e in table.entries.values())
        return TableOutcome(file=stored, quality=quality, samples=samples, entries=entries)

    def record(
        self, session: Session, lease: Lease, params: LatencyTableParams, result: TableOutcome
    ) -> dict[str, Any]:
        """Register the table (kind ``lut``) and the end-to-end measurements."""
        target = find_target(session, lease, params.target)
        artifact = register_artifact(
            session, result.file, kind="latency_table", job_id=lease.job_id, user_id=lease.user_id
        )
        table = LatencyTable(target_id=target.id, space=params.space, kind="lut", artifact_id=artifact.id,
                             quality=result.quality, job_id=lease.job_id)  # fmt: skip
        session.add(table)
        for sample in result.samples:
            row = LatencyMeasurement(
                target_id=target.id,
                space=params.space,
                arch_key=sample.arch_key,
                arch=sample.arch,
                latency_ms=sample.ms,
                source=f"job {lease.job_id}",
            )
            session.add(row)
        session.flush()
        return {"latency_table_id": table.id}
