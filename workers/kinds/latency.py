"""``build_latency_model``: a target's latency models for a space, measured on its device, with their quality.

One job, two ways of reaching the device: a target of the cluster is measured in the job's own
process, on a Ray node advertising ``target:<name>`` (`predictors.latency.devices.LocalDevice`); a
remote target's models go to its agents as leased tasks (`workers.agent_device.AgentDevice`),
shared by every agent registered for it. The job measures the per-layer lookup table (the same
enumeration and OFA key grammar whichever device), then end-to-end subnets (half spread over MACs,
the rest where the learned predictor is least sure), fits the learned predictor, and scores both on
end-to-end measurements they were not fitted on. ``build_latency_table`` is the table alone, scored
on a few subnets spread over MACs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from nas.space import Arch, as_rng
from predictors.search_spec import MeasureSettingsDict
from store.artifacts import StoredFile, register_artifact
from store.engine import Database
from store.models import LatencyMeasurement, LatencyTable, Target
from store.queue import Lease
from store.target_rows import row_spec, target_row
from workers.agent_device import AgentDevice, AgentsUnreachableError
from workers.kinds.base import JobError, TypedJobKind, WorkContext, register_job_kind

if TYPE_CHECKING:
    from predictors.latency import LearnedLatencyPredictor, LookupTable
    from predictors.latency.devices import LatencyDevice

TABLE_KEY = "jobs/{job_id}/latency_table.json"
LEARNED_KEY = "jobs/{job_id}/latency_predictor.json"
CV_FOLDS = 5


def target_spec(row: Target) -> dict[str, Any]:
    """The `predictors.latency.Target` dict of a target row."""
    return row_spec(row).to_dict()


def local_targets(names: list[str]) -> list[str]:
    """The targets among `names` that a worker node measures itself (built in, not remote)."""
    from predictors.latency import targets as builtin

    return [n for n in names if n in builtin.list_targets() and not builtin.get_target(n).remote]


def measuring_resources(names: list[str]) -> dict[str, float]:
    """The Ray resources of a job that measures on `names`: one unit of each cluster target's ``target:<name>``."""
    return {f"target:{name}": 1.0 for name in local_targets(names)}


def find_target(session: Session, lease: Lease, name: str) -> Target:
    """The target row `name` that the job's owner may use (theirs or a shared one); built-ins get a row.

    Raises:
        JobError: ``not_found`` for an unknown target or another user's.
    """
    row = target_row(session, name, lease.user_id)
    if row is None or (row.user_id is not None and lease.user_id is not None and row.user_id != lease.user_id):
        raise JobError("not_found", f"target {name!r}: no such target")
    return row


class LatencyModelRequest(BaseModel):
    """What to measure for a target's latency models (the body of ``POST /v1/targets/{name}/models``)."""

    model_config = ConfigDict(extra="forbid")

    space: str = Field(description="a registered space preset (see `hwnas spaces`)")
    resolutions: list[int] | None = Field(None, description="a subset of the space's resolutions (default: all)")
    settings: MeasureSettingsDict = Field(
        default_factory=dict, validate_default=True,
        description="predictors.latency.MeasureSettings fields (warm-up, runs, noise threshold)",
    )  # fmt: skip
    table: bool = Field(True, description="measure the per-layer lookup table")
    learned: bool = Field(True, description="fit the learned predictor on the end-to-end samples (needs 10)")
    samples: int = Field(
        100, ge=0, le=2_000,
        description="subnets measured end to end: half spread over MACs, the rest chosen by the learned predictor",
    )  # fmt: skip
    seed: int = Field(0, ge=0)
    wait_s: float = Field(
        3600.0, gt=0, le=7 * 86_400,
        description="a remote target's job fails when none of its agents takes or finishes a task for this long",
    )  # fmt: skip

    @field_validator("space")
    @classmethod
    def _known_space(cls, space: str) -> str:
        from nas.spaces import list_spaces

        if space not in list_spaces():
            raise ValueError(f"unknown space {space!r}; registered: {list_spaces()}")
        return space

    @model_validator(mode="after")
    def _something_to_build(self) -> LatencyModelRequest:
        from nas.spaces import get_space

        if not (self.table or self.learned):
            raise ValueError("nothing to build: ask for the table, the learned predictor or both")
        if self.learned and self.samples < 2 * CV_FOLDS:
            raise ValueError(f"samples: the learned predictor needs at least {2 * CV_FOLDS}, got {self.samples}")
        if self.resolutions is not None:
            get_space(self.space).restrict(resolutions=self.resolutions)  # names a resolution outside the space
        return self


class LatencyModelParams(LatencyModelRequest):
    """Parameters of a ``build_latency_model`` job."""

    target: str = Field(min_length=1, max_length=120, description="the target to measure on, e.g. cpu-ort")


class LatencyTableParams(LatencyModelParams):
    """Parameters of a ``build_latency_table`` job: the table, scored on `samples` subnets spread over MACs."""

    learned: bool = Field(False, description="also fit the learned predictor on the end-to-end samples")
    samples: int = Field(20, ge=0, le=2_000, description="subnets spread over MACs measured end to end")


class DeviceTarget(BaseModel):
    """A target as a job's work needs it to reach its device (see `target_device`).

    Attributes:
        spec: its `predictors.latency.Target` dict.
        target_id: its row.
        remote: measured by its agents.
    """

    spec: dict[str, Any]
    target_id: int
    remote: bool

    @classmethod
    def of(cls, row: Target) -> DeviceTarget:
        """The target of `row`."""
        spec = target_spec(row)
        return cls(spec=spec, target_id=row.id, remote=bool(spec.get("remote")))


class LatencySample(BaseModel):
    """A subnet measured end to end."""

    arch: dict[str, Any]
    arch_key: str
    ms: float


class LatencyModelOutcome(BaseModel):
    """The result of a latency-model job: the stored models, their quality and the end-to-end samples."""

    file: StoredFile | None = Field(None, description="the lookup table (None when not asked for)")
    quality: dict[str, Any] | None = Field(
        None, description="the table's predictors.latency.LatencyMetrics on the samples, with each predicted/measured"
    )
    learned_file: StoredFile | None = Field(None, description="the learned predictor (None when not asked for)")
    learned_quality: dict[str, Any] | None = Field(
        None, description=f"the learned predictor's metrics, {CV_FOLDS}-fold cross-validated on the samples"
    )
    samples: list[LatencySample]
    entries: int = 0


def _quality(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, Any]:
    """Metrics and the pairs themselves (for a predicted-vs-measured plot)."""
    from predictors.latency import latency_metrics

    pairs = {"predicted": [float(p) for p in predicted], "measured": [float(m) for m in measured]}
    return {**asdict(latency_metrics(predicted, measured)), **pairs}


@register_job_kind("build_latency_model")
class BuildLatencyModelJob(TypedJobKind[LatencyModelParams, DeviceTarget, LatencyModelOutcome]):
    """Measures a target's lookup table and end-to-end samples on its device; fits and scores the learned predictor.

    A remote target's job waits for its agents (``hwnas agent``); its tasks are kept across
    reruns of the job, so a job whose worker died measures nothing twice.
    """

    Params = LatencyModelParams
    Inputs = DeviceTarget
    Result = LatencyModelOutcome

    def ray_resources(self, params: LatencyModelParams) -> dict[str, float]:
        """One unit of a cluster target's resource, so measurements on a node run one at a time."""
        return measuring_resources([params.target])

    def resolve(self, session: Session, lease: Lease, params: LatencyModelParams) -> DeviceTarget:
        """The target's measurement spec and row."""
        return DeviceTarget.of(find_target(session, lease, params.target))

    def work(self, params: LatencyModelParams, inputs: DeviceTarget, ctx: WorkContext) -> LatencyModelOutcome:
        """Measure on the target's device, fit, score, store."""
        device, close = target_device(inputs, ctx, params.wait_s)
        try:
            with device_errors():
                return self._build(params, device, ctx)
        finally:
            close()

    def _build(self, params: LatencyModelParams, device: LatencyDevice, ctx: WorkContext) -> LatencyModelOutcome:
        from nas.spaces import get_space
        from predictors.accuracy_data import sample_spread_over_macs
        from predictors.latency import LearnedLatencyPredictor, LookupTable, MeasureSettings
        from predictors.latency.models import subnet_onnx

        space = get_space(params.space)
        drawn = space.restrict(resolutions=params.resolutions) if params.resolutions else space
        settings = MeasureSettings.from_dict(params.settings)
        step = 0

        def table_progress(done: int, total: int, key: str) -> None:
            nonlocal step
            if done * 20 // total > step or done == total:  # ~20 events per table
                step = done * 20 // total
                ctx.progress(stage="table", done=done, total=total, layer=key)

        table = None
        if params.table:
            table = LookupTable.build(space, device, params.resolutions, table_progress, settings, label="table")
        archs: list[Arch] = []
        ms: list[float] = []

        def measure(batch: list[Arch], label: str) -> None:
            def progress(done: int, _total: int) -> None:
                ctx.progress(stage="end_to_end", done=len(archs) + done, total=params.samples)

            models = [subnet_onnx(space, arch) for arch in batch]
            ms.extend(m.median_ms for m in device.measure(models, settings, label=label, progress=progress))
            archs.extend(batch)

        rng = as_rng(params.seed)
        spread = params.samples // 2 if params.learned else params.samples
        if spread:
            measure(sample_spread_over_macs(drawn, spread, rng), "spread")
        for round_ in range(4):  # the rest in four rounds, each where the predictor fitted so far is least sure
            remaining = params.samples - len(archs)
            if not params.learned or remaining <= 0:
                break
            candidates = drawn.sample(rng, 2_000)
            known = {space.key(a) for a in archs}
            fresh = [a for a in candidates if space.key(a) not in known]
            fitted = LearnedLatencyPredictor(space, table, seed=params.seed).fit(archs, ms)
            picked = fitted.suggest(fresh, remaining if round_ == 3 else max(1, -(-remaining // (4 - round_))))
            measure([fresh[i] for i in picked], f"active/{round_}")
        outcome = LatencyModelOutcome(samples=[LatencySample(arch=a, arch_key=space.key(a), ms=m)
                                               for a, m in zip(archs, ms, strict=True)])  # fmt: skip
        if table is not None:
            outcome.entries = sum(len(e) for e in table.entries.values())
            outcome.file = ctx.store.put(TABLE_KEY.format(job_id=ctx.job_id), json.dumps(table.to_dict()).encode())
            if len(archs) > 1:
                outcome.quality = _quality(table.predict(archs).tolist(), ms)
        if params.learned:
            ctx.progress(stage="fit", samples=len(archs))
            predicted = cross_validated(lambda a, m: LearnedLatencyPredictor(space, table, seed=params.seed).fit(a, m),
                                        archs, ms, params.seed)  # fmt: skip
            outcome.learned_quality = _quality(predicted, ms)
            learned = LearnedLatencyPredictor(space, table, seed=params.seed).fit(archs, ms)
            key = LEARNED_KEY.format(job_id=ctx.job_id)
            outcome.learned_file = ctx.store.put(key, json.dumps(learned.to_dict()).encode())
        return outcome

    def record(
        self, session: Session, lease: Lease, params: LatencyModelParams, result: LatencyModelOutcome
    ) -> dict[str, Any]:
        """Register the models (kinds ``lut`` and ``learned``) and the end-to-end measurements."""
        target = find_target(session, lease, params.target)
        ids: dict[str, Any] = {}
        for kind, file, quality in (("lut", result.file, result.quality),
                                    ("learned", result.learned_file, result.learned_quality)):  # fmt: skip
            if file is None:
                continue
            artifact = register_artifact(session, file, kind="latency_table" if kind == "lut" else "latency_predictor",
                                         job_id=lease.job_id, user_id=lease.user_id)  # fmt: skip
            row = LatencyTable(target_id=target.id, space=params.space, kind=kind, artifact_id=artifact.id,
                               quality=quality, job_id=lease.job_id)  # fmt: skip
            session.add(row)
            session.flush()
            ids["latency_table_id" if kind == "lut" else "latency_predictor_id"] = row.id
        for sample in result.samples:
            measured = LatencyMeasurement(target_id=target.id, space=params.space, arch_key=sample.arch_key,
                                     arch=sample.arch, latency_ms=sample.ms, source=f"job {lease.job_id}")  # fmt: skip
            session.add(measured)
        session.flush()
        return ids


@register_job_kind("build_latency_table")
class BuildLatencyTableJob(BuildLatencyModelJob):
    """`BuildLatencyModelJob` with the table alone by default, scored on 20 subnets spread over MACs."""

    Params = LatencyTableParams


MODEL_PRIORITY = ("learned", "lut", "imported")
"""Latency model kinds in order of trust (DESIGN.md): fitted on end-to-end samples, measured per layer, imported."""


def best_latency_model(session: Session, target_id: int, space: str) -> LatencyTable | None:
    """The target's most trusted latency model for the space (`MODEL_PRIORITY`, then the newest), if any."""
    rows = session.scalars(
        select(LatencyTable).where(LatencyTable.target_id == target_id, LatencyTable.space == space)
    ).all()
    return most_trusted(rows)


def most_trusted(rows: Sequence[LatencyTable]) -> LatencyTable | None:
    """The model a search uses among `rows` (one target and space): by `MODEL_PRIORITY`, then the newest."""
    usable = [row for row in rows if row.artifact_id is not None and row.kind in MODEL_PRIORITY]
    return min(usable, key=lambda row: (MODEL_PRIORITY.index(row.kind), -row.id), default=None)


def load_latency_model(kind: str, data: bytes) -> LookupTable | LearnedLatencyPredictor:
    """A stored latency model of `kind` (see `MODEL_PRIORITY`) from its file."""
    from predictors.latency import LearnedLatencyPredictor, LookupTable

    doc = json.loads(data)
    return LearnedLatencyPredictor.from_dict(doc) if kind == "learned" else LookupTable.from_dict(doc)


def cross_validated(
    fit: Callable[[list[Arch], list[float]], Any], archs: list[Arch], ms: list[float], seed: int
) -> list[float]:
    """Each sample's prediction by a model fitted on the other folds (`CV_FOLDS` folds, shuffled by `seed`)."""
    order = as_rng(seed).permutation(len(archs))
    predicted = [0.0] * len(archs)
    for fold in range(CV_FOLDS):
        held = set(order[fold::CV_FOLDS].tolist())
        model = fit([a for i, a in enumerate(archs) if i not in held], [m for i, m in enumerate(ms) if i not in held])
        for i, value in zip(sorted(held), model.predict([archs[i] for i in sorted(held)]), strict=True):
            predicted[i] = float(value)
    return predicted


@contextmanager
def device_errors() -> Iterator[None]:
    """A device's failures as job errors: ``measurement_failed`` (naming the models), ``no_agent``."""
    from predictors.latency.devices import DeviceMeasurementError

    try:
        yield
    except DeviceMeasurementError as error:
        raise JobError("measurement_failed", str(error)) from None
    except AgentsUnreachableError as error:
        raise JobError("no_agent", str(error)) from None


def target_device(
    target: DeviceTarget, ctx: WorkContext, wait_s: float = 3600.0
) -> tuple[LatencyDevice, Callable[[], None]]:
    """The device that measures a target for a job, and what closes it: the target's agents, or this process.

    Args:
        target: the target.
        ctx: the job's context (its database, store, cancellation and log).
        wait_s: how long a remote batch may wait without any agent taking or finishing a task.

    Raises:
        JobError: ``target_unavailable`` for a cluster target this process cannot measure.
    """
    from predictors.latency import Target
    from predictors.latency.devices import LocalDevice

    spec = Target.from_dict(target.spec)
    if not target.remote:
        ok, why = spec.availability()
        if not ok:
            raise JobError("target_unavailable", f"target {spec.name!r} cannot be measured here: {why}")
        return LocalDevice(spec), lambda: None
    if ctx.db_url is None:
        raise JobError("no_database", f"target {spec.name!r} is measured by agents, which this worker cannot reach")
    db = Database(ctx.db_url)
    device = AgentDevice(db, ctx.store, spec, target.target_id, job_id=ctx.job_id, user_id=ctx.user_id,
                         wait_s=wait_s, check=ctx.check_cancelled, log=ctx.log)  # fmt: skip
    return device, db.dispose
