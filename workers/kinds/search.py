"""``search``: `predictors.pipeline.run_search` on a stored supernet, its evaluation cache and latency tables.

The job reads its inputs from SQL (the checkpoint, the best latency model of each target for the
space: learned, else a measured table, else an imported one, the newest of its kind; the supernet's
evaluation cache), makes one `run_search` call, and stores what it made: the front's bundles, the
tables it built, and the accuracies it measured. The front is validated on each target's device:
in the job's process for a cluster target, by its agents for a remote one.

The supernet's evaluation cache is a set of artefacts under ``supernets/<id>/evaluations/``: each
search stores the measurements it added as one file and the next search reads the union of them.
Appending a file per search instead of rewriting one shared file means two concurrent searches
cannot lose each other's records. The job's own measurements are also cached in its run dir, so a
reclaimed job resumes.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from predictors.pipeline import PREDICTOR_SPLIT, PredictorSummary
from predictors.search_spec import SearchSpec
from store.artifacts import StoredFile, register_artifact
from store.models import Artifact, LatencyTable, Search, Subnet
from store.queue import Lease
from workers.kinds.base import JobError, TypedJobKind, WorkContext, register_job_kind
from workers.kinds.datasets import FileRef
from workers.kinds.latency import (
    DeviceTarget,
    best_latency_model,
    device_errors,
    find_target,
    load_latency_model,
    local_targets,
    measuring_resources,
    target_device,
)
from workers.kinds.supernets import CheckpointInputs, checkpoint_inputs, load_supernet

EVALUATION_CACHE = "evaluation_cache"
"""The artefact kind of a search's additions to its supernet's evaluation cache."""


def evaluations_prefix(supernet_id: int) -> str:
    """Where the artefacts of a supernet's evaluation cache are stored (one file per search that added to it)."""
    return f"supernets/{supernet_id}/evaluations/"


class SearchParams(SearchSpec):
    """Parameters of a ``search`` job: the spec, on a supernet of `space`."""

    supernet_id: int = Field(ge=1)
    space: str


def search_row(session: Session, job_id: int, user_id: int | None, params: SearchParams) -> Search:
    """The `Search` row of the job, created now if it has none (the one place a search row is created)."""
    search = session.scalars(select(Search).where(Search.job_id == job_id)).one_or_none()
    if search is None:
        spec = params.model_dump(mode="json")
        search = Search(user_id=user_id, job_id=job_id, supernet_id=params.supernet_id,
                        **{k: spec[k] for k in ("objectives", "directions", "constraints", "targets", "algorithm",
                                                "budget")})  # fmt: skip
        session.add(search)
        session.flush()
    return search


class TargetInputs(DeviceTarget):
    """A target and its best latency model for the space (None: build a table here)."""

    table: FileRef | None
    kind: str | None = Field(None, description="the model's kind: learned, lut or imported")


class SearchInputs(CheckpointInputs):
    """The checkpoint, the targets, and the files of the supernet's evaluation cache."""

    targets: dict[str, TargetInputs]
    evaluations: list[FileRef]


class StoredMember(BaseModel):
    """A front member as the job stores it: values, and its bundle's file."""

    arch: dict[str, Any]
    arch_key: str
    predicted: dict[str, float]
    validated: dict[str, float]
    sources: dict[str, str]
    file: StoredFile


class BuiltTable(BaseModel):
    """A latency table the job built, and its file."""

    target: str
    file: StoredFile


class SearchOutcome(BaseModel):
    """The result of a ``search`` job (`predictors.pipeline.ValidatedFront`, with stored files)."""

    n_evaluations: int = 0
    reason: str | None = None
    hypervolume: float = 0.0
    hypervolume_reference: dict[str, float] = Field(default_factory=dict)
    predictor: PredictorSummary | None = None
    evaluation_cache: StoredFile | None = None
    members: list[StoredMember] = Field(default_factory=list)
    built_tables: list[BuiltTable] = Field(default_factory=list)
    drift: dict[str, dict[str, Any]] = Field(default_factory=dict)


@register_job_kind("search")
class SearchJob(TypedJobKind[SearchParams, SearchInputs, SearchOutcome]):
    """A search over a trained supernet (see `predictors.pipeline` for the stages)."""

    Params = SearchParams
    Inputs = SearchInputs
    Result = SearchOutcome

    def ray_resources(self, params: SearchParams) -> dict[str, float]:
        """The resources of the local targets whose latencies this job measures."""
        return measuring_resources(params.targets)

    def resolve(self, session: Session, lease: Lease, params: SearchParams) -> SearchInputs:
        """The checkpoint, the supernet's evaluation-cache files, and per target its spec and newest table (or None).

        Raises:
            JobError: ``no_latency_model`` for a target without a table that cannot be measured here.
        """
        targets: dict[str, TargetInputs] = {}
        local = local_targets(params.targets)
        for name in params.targets:
            target = find_target(session, lease, name)
            row = best_latency_model(session, target.id, params.space)
            artifact = session.get(Artifact, row.artifact_id) if row is not None and row.artifact_id else None
            if artifact is None and name not in local:
                raise JobError(
                    "no_latency_model",
                    f"target {name!r} has no latency model for space {params.space!r}: let its agents measure one "
                    f"(POST /v1/targets/{name}/models, or `hwnas target build {name} --space {params.space}`) "
                    f"or import OFA tables (POST /v1/targets/{name}/tables)",
                )
            table = None if artifact is None else (artifact.key, artifact.sha256)
            targets[name] = TargetInputs(**dict(DeviceTarget.of(target)), table=table,
                                         kind=None if row is None else row.kind)  # fmt: skip
        evaluations = session.scalars(
            select(Artifact)
            .where(Artifact.kind == EVALUATION_CACHE)
            .where(Artifact.key.startswith(evaluations_prefix(params.supernet_id), autoescape=True))
            .order_by(Artifact.id)
        )
        return SearchInputs(
            **dict(checkpoint_inputs(session, lease, params.supernet_id)),
            targets=targets,
            evaluations=[(row.key, row.sha256) for row in evaluations],
        )

    def work(self, params: SearchParams, inputs: SearchInputs, ctx: WorkContext) -> SearchOutcome:
        """Load the stored inputs, `run_search`, store the bundles, the new tables and the new measurements."""
        from predictors.accuracy_data import EvaluationCache, supernet_fingerprint
        from predictors.pipeline import LatencyModelMismatchError, run_search

        supernet = load_supernet(inputs, ctx).supernet
        models = {name: load_latency_model(info.kind, ctx.store.get(*info.table))
                  for name, info in inputs.targets.items() if info.table and info.kind}  # fmt: skip
        devices, closers = {}, []
        for name, info in inputs.targets.items():
            if info.remote or name in local_targets(params.targets):
                devices[name], close = target_device(info, ctx)
                closers.append(close)
        folder = ctx.store.fetch_tree(
            {f"{i}.json": ref for i, ref in enumerate(inputs.evaluations)}, ctx.run_dir / "supernet_evaluations"
        )
        space, fingerprint = supernet.space, supernet_fingerprint(supernet)
        known = EvaluationCache(None, space, PREDICTOR_SPLIT, fingerprint)  # the union of earlier searches' files
        for i in range(len(inputs.evaluations)):
            known.merge(EvaluationCache(folder / f"{i}.json", space, PREDICTOR_SPLIT, fingerprint))
        try:
            with device_errors():
                front = run_search(supernet, params, out_dir=ctx.run_dir, evaluations=known, latency=models,
                                   measurable=devices, report=ctx)  # fmt: skip
        except LatencyModelMismatchError as error:
            raise JobError("latency_model_mismatch", str(error)) from None
        finally:
            for close in closers:
                close()
        stored_cache = None
        if front.measured is not None:
            key = f"{evaluations_prefix(params.supernet_id)}job-{ctx.job_id}.json"
            stored_cache = ctx.store.put(key, json.dumps(front.measured.to_dict()).encode())
        built = [
            BuiltTable(target=name, file=ctx.store.put(f"jobs/{ctx.job_id}/latency_{name}.json",
                                                       json.dumps(table.to_dict()).encode()))
            for name, table in front.built_tables.items()
        ]  # fmt: skip
        members = [
            StoredMember(arch=m.arch, arch_key=m.arch_key, predicted=m.predicted, validated=m.validated,
                         sources=m.sources, file=ctx.store.put(f"jobs/{ctx.job_id}/subnets/{m.arch_key}.zip", m.bundle))
            for m in front.members
        ]  # fmt: skip
        return SearchOutcome(
            n_evaluations=front.n_evaluations, reason=front.reason, hypervolume=front.hypervolume,
            hypervolume_reference=front.hypervolume_reference, predictor=front.predictor,
            evaluation_cache=stored_cache, members=members, built_tables=built, drift=front.drift,
        )  # fmt: skip

    def record(self, session: Session, lease: Lease, params: SearchParams, result: SearchOutcome) -> dict[str, Any]:
        """Register the front's subnets and bundles, new tables, the supernet's new evaluations, and the hypervolume."""
        search = search_row(session, lease.job_id, lease.user_id, params)
        search.hypervolume = result.hypervolume
        for built in result.built_tables:
            target = find_target(session, lease, built.target)
            artifact = register_artifact(session, built.file, kind="latency_table", job_id=lease.job_id,
                                         user_id=lease.user_id)  # fmt: skip
            session.add(LatencyTable(target_id=target.id, space=params.space, kind="lut", artifact_id=artifact.id,
                                     job_id=lease.job_id))  # fmt: skip
        if result.evaluation_cache is not None:
            register_artifact(session, result.evaluation_cache, kind=EVALUATION_CACHE, job_id=lease.job_id,
                              user_id=lease.user_id)  # fmt: skip
        ids = []
        for member in result.members:
            artifact = register_artifact(session, member.file, kind="bundle", job_id=lease.job_id,
                                         user_id=lease.user_id)  # fmt: skip
            subnet = Subnet(user_id=lease.user_id, supernet_id=params.supernet_id, search_id=search.id,
                            arch_key=member.arch_key, arch=member.arch, predicted=member.predicted,
                            validated=member.validated, pareto_rank=0, bundle_artifact_id=artifact.id)  # fmt: skip
            session.add(subnet)
            session.flush()
            ids.append(subnet.id)
        return {"search_id": search.id, "subnet_ids": ids}
