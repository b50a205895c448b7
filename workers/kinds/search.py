"""``search``: search a trained supernet on predictors and latency tables, validate the front, export it.

The work, in order (each stage reports progress and can be cancelled):

1. load the supernet; a latency objective per target from its newest lookup table for the
   space; a target without one that can be measured here (a built-in local target, on a node
   advertising ``target:<name>``) gets its table built now;
2. a constraint on MACs, parameters or a table latency that no subnet of the space can meet
   (its exact range, `nas.search.feasibility`) ends the job here, with an empty front and the
   reason;
3. if ``accuracy`` is an objective, evaluate `predictor_samples` subnets (spread over MACs) on
   the validation split, and fit the gradient-boosted accuracy predictor on 80% of them (scored
   on the other 20%, then refitted on all). Subnets in the supernet's evaluation cache are not
   evaluated again: each search stores
   the measurements it added as one artefact under ``supernets/<id>/evaluations/`` and the next
   search reads the union of them. Appending a file per search instead of rewriting one shared
   file means two concurrent searches cannot lose each other's records. The job's own
   measurements are also cached in its run dir, so a reclaimed job resumes;
4. `nas.search.search` with the request's algorithm, budget and seed;
5. a BN-recalibrated bundle (ONNX + safetensors + arch.json) of every front member, up to
   `export_limit`, validated on that very file: top-1 on the test split with ONNX Runtime and the
   bundle's own preprocessing, latency measured end to end on targets measurable here (else the
   table's value). The measurements on a target are bracketed by two of a reference subnet (the
   first member); when those disagree beyond the measure settings' ``cv_threshold`` the front is
   measured again, and the result's ``drift`` says so per target.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.artifacts import StoredFile, register_artifact
from store.models import Artifact, LatencyTable, Search, Subnet
from store.queue import Lease
from workers.kinds.base import JobError, JobKind, WorkContext, register_job_kind
from workers.kinds.latency import find_target, target_spec
from workers.kinds.supernets import checkpoint_inputs, load_supernet

LATENCY_PREFIX = "latency:"
FIXED_OBJECTIVES = ("accuracy", "macs", "params")
EVALUATION_CACHE = "evaluation_cache"
"""The artefact kind of a search's additions to its supernet's evaluation cache."""
PREDICTOR_SPLIT = "val"
# LightGBM, not the MLP: fitted on ~100 noisy validation accuracies, the MLP ranked held-out subnets at
# Kendall tau 0.30 and predicted up to 0.99 for front members that scored 0.96 (trees do not extrapolate
# past the best measured subnet); gbm: tau 0.48, front error 0.005 instead of 0.007-0.011 (NOTES.md)
PREDICTOR_KIND = "gbm"


def evaluations_prefix(supernet_id: int) -> str:
    """Where the artefacts of a supernet's evaluation cache are stored (one file per search that added to it)."""
    return f"supernets/{supernet_id}/evaluations/"


def _local_targets(names: list[str]) -> list[str]:
    """The targets among `names` that a worker node measures itself (built in, not remote)."""
    from predictors.latency import targets as builtin

    return [n for n in names if n in builtin.list_targets() and not builtin.get_target(n).remote]


class SearchParams(BaseModel):
    """Parameters of a ``search`` job (the API's request, normalised)."""

    model_config = ConfigDict(extra="forbid")

    supernet_id: int = Field(ge=1)
    space: str
    objectives: list[str] = Field(min_length=1, description="accuracy, macs, params or latency:<target>")
    directions: dict[str, Literal["min", "max"]]
    constraints: dict[str, float | list[float | None]] = Field(default_factory=dict)
    targets: list[str] = Field(default_factory=list)
    algorithm: str
    budget: int = Field(ge=1)
    seed: int = Field(0, ge=0)
    predictor_samples: int = Field(100, ge=10, le=100_000, description="real evaluations to fit the accuracy model")
    export_limit: int = Field(20, ge=0, le=1000, description="front members exported as bundles")
    measure: dict[str, Any] = Field(
        default_factory=dict, description="MeasureSettings for latency tables built here and for validation"
    )

    @field_validator("measure")
    @classmethod
    def _valid_measure(cls, measure: dict[str, Any]) -> dict[str, Any]:
        from predictors.latency import MeasureSettings

        return MeasureSettings.from_dict(measure).to_dict()

    def model_post_init(self, _context: Any) -> None:
        """Check that every objective is known and every latency objective names one of the targets."""
        for name in self.objectives:
            target = name.removeprefix(LATENCY_PREFIX)
            if name not in FIXED_OBJECTIVES and not (name.startswith(LATENCY_PREFIX) and target in self.targets):
                raise ValueError(f"objective {name!r}: use {list(FIXED_OBJECTIVES)} or latency:<one of {self.targets}>")


@register_job_kind("search")
class SearchJob(JobKind[SearchParams]):
    """A search over a trained supernet (see the module docstring for the stages)."""

    Params = SearchParams

    def ray_resources(self, params: SearchParams) -> dict[str, float]:
        """The resources of the local targets whose latencies this job measures."""
        return {f"target:{name}": 1.0 for name in _local_targets(params.targets)}

    def inputs(self, session: Session, lease: Lease, params: SearchParams) -> dict[str, Any]:
        """The checkpoint, the supernet's evaluation-cache files, and per target its spec and newest table (or None)."""
        tables: dict[str, Any] = {}
        local = _local_targets(params.targets)
        for name in params.targets:
            target = find_target(session, lease, name)
            row = session.scalars(
                select(LatencyTable)
                .where(LatencyTable.target_id == target.id, LatencyTable.space == params.space)
                .where(LatencyTable.artifact_id.is_not(None))
                .order_by(LatencyTable.id.desc())
            ).first()
            artifact = session.get(Artifact, row.artifact_id) if row is not None and row.artifact_id else None
            if artifact is None and name not in local:
                raise JobError(
                    "no_latency_model",
                    f"target {name!r} has no latency table for space {params.space!r}: upload one "
                    "(POST /v1/targets/{name}/tables) or let its device agent measure one",
                )
            tables[name] = {
                "spec": target_spec(target),
                "file": (artifact.key, artifact.sha256) if artifact is not None else None,
            }
        evaluations = session.scalars(
            select(Artifact)
            .where(Artifact.kind == EVALUATION_CACHE)
            .where(Artifact.key.startswith(evaluations_prefix(params.supernet_id), autoescape=True))
            .order_by(Artifact.id)
        )
        return {
            "checkpoint": checkpoint_inputs(session, lease, params.supernet_id),
            "targets": tables,
            "evaluations": [(row.key, row.sha256) for row in evaluations],
        }

    def run(self, params: SearchParams, inputs: dict[str, Any], ctx: WorkContext) -> dict[str, Any]:
        """Predict, search, validate and export (see the module docstring)."""
        from nas.search import CostObjective, search
        from nas.search.problem import Bound

        supernet = load_supernet(inputs["checkpoint"], ctx).supernet
        space = supernet.space
        objectives: dict[str, Any] = {
            "macs": CostObjective(space, "macs"),
            "params": CostObjective(space, "params"),
        }
        tables, built = self._latency_tables(params, inputs["targets"], space, ctx)
        for name, table in tables.items():
            objectives[LATENCY_PREFIX + name] = table
        constraints: dict[str, Bound] = {
            k: (v[0], v[1]) if isinstance(v, list) else v for k, v in params.constraints.items()
        }
        outcome: dict[str, Any] = {
            "n_evaluations": 0, "reason": None, "hypervolume": 0.0, "hypervolume_reference": {}, "predictor": None,
            "evaluation_cache": None, "members": [], "built_tables": built, "drift": {},
        }  # fmt: skip
        infeasible = self._proven_infeasible(params, space, objectives, constraints)
        if infeasible is not None:  # before the predictor, which costs minutes of real evaluations
            ctx.log(infeasible)
            return {**outcome, "reason": infeasible}
        if "accuracy" in params.objectives:
            objectives["accuracy"], outcome["predictor"], outcome["evaluation_cache"] = self._accuracy_predictor(
                params, supernet, inputs["evaluations"], ctx
            )

        def progress(event: Any) -> None:
            ctx.progress(stage="search", generation=event.generation, evaluations=event.evaluations,
                         budget=event.budget, front_size=event.front_size, best=event.best)  # fmt: skip

        try:
            result = search(
                space, {o: objectives[o] for o in params.objectives}, params.directions, constraints,
                algorithm=params.algorithm, budget=params.budget, seed=params.seed, progress=progress,
            )  # fmt: skip
        except KeyError as error:  # a table without an entry the space needs
            raise JobError("latency_model_mismatch", str(error.args[0])) from None
        members, outcome["drift"] = self._validate_and_export(params, result, supernet, inputs["targets"], tables, ctx)
        reference = {n: float(result.values[:, i].min() if d == "max" else result.values[:, i].max())
                     for i, (n, d) in enumerate(zip(result.names, result.problem.directions, strict=True))}  # fmt: skip
        return {
            **outcome,
            "n_evaluations": result.n_evaluations,
            "reason": result.reason,
            "hypervolume": result.hypervolume(reference) if members else 0.0,
            "hypervolume_reference": reference,
            "members": members,
        }

    @staticmethod
    def _proven_infeasible(
        params: SearchParams, space: Any, objectives: dict[str, Any], constraints: dict[str, Any]
    ) -> str | None:
        """Why a constraint on a cheap objective (MACs, parameters, a latency table) cannot be met, if it is proven.

        The exact range of these objectives over the space is computed from their per-block terms
        (`nas.search.feasibility`), so a bound outside it is unreachable whatever the search does.
        """
        from nas.search.feasibility import infeasible_reason
        from nas.search.problem import Problem

        names = [name for name in constraints if name in objectives]
        if not names:
            return None
        problem = Problem.build(
            space, {n: objectives[n] for n in names}, {n: params.directions.get(n, "min") for n in names},
            {n: constraints[n] for n in names},
        )  # fmt: skip
        reason = infeasible_reason(problem)
        return None if reason is None else f"{reason}; the search did not run"

    @staticmethod
    def _accuracy_predictor(
        params: SearchParams, supernet: Any, cache_files: list[tuple[str, str]], ctx: WorkContext
    ) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
        """Fit the accuracy predictor on subnets found in the supernet's evaluation cache or measured now.

        Returns:
            The predictor; its summary (``samples``, the ``held_out`` score, and ``evaluated_now``:
            how many subnets this job measured because the cache lacked them); and the stored file
            of those measurements, to be added to the supernet's cache (None when there are none).
        """
        from predictors.accuracy import AccuracyPredictor
        from predictors.accuracy_data import (
            EvaluationCache,
            build_dataset,
            sample_spread_over_macs,
            supernet_fingerprint,
        )

        space = supernet.space
        fingerprint = supernet_fingerprint(supernet)
        folder = ctx.store.fetch_tree(
            {f"{i}.json": (key, sha) for i, (key, sha) in enumerate(cache_files)}, ctx.run_dir / "supernet_evaluations"
        )
        known = EvaluationCache(None, space, PREDICTOR_SPLIT, fingerprint)  # the union of earlier searches' files
        for i in range(len(cache_files)):
            known.merge(EvaluationCache(folder / f"{i}.json", space, PREDICTOR_SPLIT, fingerprint))
        cache = EvaluationCache(ctx.run_dir / "accuracy_val.json", space, PREDICTOR_SPLIT, fingerprint)
        cache.merge(known)
        archs = sample_spread_over_macs(space, params.predictor_samples, rng=params.seed)

        def progress(done: int, total: int) -> None:
            ctx.progress(stage="predictor", done=done, total=total)

        archs, acc = build_dataset(supernet, archs, cache=cache, split=PREDICTOR_SPLIT, progress=progress)
        measured = cache.difference(known)
        stored = None
        if measured.records:
            key = f"{evaluations_prefix(params.supernet_id)}job-{ctx.job_id}.json"
            stored = asdict(ctx.store.put(key, json.dumps(measured.to_dict()).encode()))
        split = max(1, len(archs) * 4 // 5)
        predictor = AccuracyPredictor(space, PREDICTOR_KIND, seed=params.seed).fit(archs[:split], acc[:split])
        score = predictor.evaluate(archs[split:], acc[split:]) if len(archs) - split > 1 else None
        predictor.fit(archs, acc)  # scored on the held-out fifth, then searched with all the measurements
        ctx.log(
            f"accuracy predictor fitted on {split} subnets, {len(measured.records)} of {len(archs)} evaluated now"
            + (f": {score}" if score else "")
        )
        summary = {"kind": PREDICTOR_KIND, "samples": len(archs), "held_out": asdict(score) if score else None,
                   "evaluated_now": len(measured.records)}  # fmt: skip
        return predictor, summary, stored

    @staticmethod
    def _latency_tables(
        params: SearchParams, targets: dict[str, Any], space: Any, ctx: WorkContext
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from predictors.latency import LookupTable, MeasureSettings, Target

        tables: dict[str, Any] = {}
        built = []
        for name, info in targets.items():
            if info["file"] is not None:
                key, sha = info["file"]
                tables[name] = LookupTable.from_dict(json.loads(ctx.store.get(key, sha)))
                continue
            ctx.log(f"target {name!r} has no table for {params.space}: measuring one")

            def progress(done: int, total: int, _key: str, name: str = name) -> None:
                if done % 25 == 0 or done == total:
                    ctx.progress(stage="latency_table", target=name, done=done, total=total)

            settings = MeasureSettings.from_dict(params.measure)
            table = LookupTable.build(space, Target.from_dict(info["spec"]), progress=progress, settings=settings)
            stored = ctx.store.put(f"jobs/{ctx.job_id}/latency_{name}.json", json.dumps(table.to_dict()).encode())
            tables[name] = table
            built.append({"target": name, "file": asdict(stored)})
        return tables, built

    @staticmethod
    def _validate_and_export(
        params: SearchParams, result: Any, supernet: Any, targets: dict[str, Any], tables: dict[str, Any],
        ctx: WorkContext,
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:  # fmt: skip
        """The front's members, exported and validated, and per local target the drift of its latency measurements.

        Every member's bundle is exported and scored first; then, per local target, the members'
        ONNX files are measured as one batch between two measurements of the first member (the
        reference), and measured again when the reference drifted (`predictors.latency.drift`).
        """
        from nas.bundle_eval import score_bundle
        from nas.export import ONNX_FILE, export_bundle, read_bundle_files
        from nas.train import BNCalibration
        from nas.train.evaluate import data_for
        from predictors.latency import MeasureSettings, Target, measure_batch

        space = supernet.space
        front = result.pareto
        if len(front) > params.export_limit:  # keep an even spread along the front (sorted by objective 1)
            keep = sorted({round(i * (len(front) - 1) / max(1, params.export_limit - 1))
                           for i in range(params.export_limit)})  # fmt: skip
            front = [front[i] for i in keep]
        calibration = BNCalibration.of_training_data(supernet)
        test = data_for(supernet)[1]["test"]
        local = set(_local_targets(params.targets))
        meta = supernet.metadata
        members, paths = [], []
        for i, (arch, predicted) in enumerate(front):
            ctx.progress(stage="validate", done=i, total=len(front))
            path = export_bundle(
                supernet, arch, ctx.run_dir / f"bundle_{i}.zip", calibration=calibration, mean=meta["mean"],
                std=meta["std"], class_names=meta["classes"], archive=True,
            )  # fmt: skip
            validated = {k: v for k, v in predicted.items() if k in ("macs", "params")}  # exact already
            sources = {}
            if "accuracy" in params.objectives:  # measured on the delivered file, as its user will run it
                validated["accuracy"] = score_bundle(path, test.images, test.labels).top1
                sources["accuracy"] = "bundle_onnx_test"
            for name, table in tables.items():
                if name not in local:
                    validated[LATENCY_PREFIX + name] = float(table.predict([arch])[0])
                    sources[LATENCY_PREFIX + name] = "table"
            stored = ctx.store.put(f"jobs/{ctx.job_id}/subnets/{space.key(arch)}.zip", path)
            members.append({"arch": arch, "arch_key": space.key(arch), "predicted": predicted,
                            "validated": validated, "sources": sources, "file": asdict(stored)})  # fmt: skip
            paths.append(path)
        drift: dict[str, dict[str, Any]] = {}
        measurable = [name for name in tables if name in local] if members else []
        onnx = [path.with_suffix(".onnx") for path in paths] if measurable else []
        for path, model in zip(paths, onnx, strict=True):
            model.write_bytes(read_bundle_files(path)[1][ONNX_FILE])
        for name in measurable:

            def progress(done: int, total: int, name: str = name) -> None:
                ctx.progress(stage="measure", target=name, done=done, total=total)

            target = Target.from_dict(targets[name]["spec"])
            measured, check = measure_batch(onnx, target, MeasureSettings.from_dict(params.measure), progress)
            for member, measurement in zip(members, measured, strict=True):
                member["validated"][LATENCY_PREFIX + name] = measurement.median_ms
                member["sources"][LATENCY_PREFIX + name] = "measured"
            drift[name] = {"reference": members[0]["arch_key"], **check.to_dict()}
            if check.remeasured:
                ctx.log(f"target {name!r}: the reference subnet's latency drifted during validation: {drift[name]}",
                        "warning")  # fmt: skip
        return members, drift

    def persist(self, session: Session, lease: Lease, params: SearchParams, result: dict[str, Any]) -> dict[str, Any]:
        """Register the front's subnets and bundles, new tables, the supernet's new evaluations, and the hypervolume."""
        search = session.scalars(select(Search).where(Search.job_id == lease.job_id)).one_or_none()
        if search is None:  # submitted without the API (e.g. from Python)
            search = Search(user_id=lease.user_id, job_id=lease.job_id, supernet_id=params.supernet_id,
                            objectives=params.objectives, directions=params.directions,
                            constraints=params.constraints, targets=params.targets, algorithm=params.algorithm,
                            budget=params.budget)  # fmt: skip
            session.add(search)
        search.hypervolume = result["hypervolume"]
        session.flush()
        for entry in result["built_tables"]:
            target = find_target(session, lease, entry["target"])
            artifact = register_artifact(session, StoredFile(**entry["file"]), kind="latency_table",
                                         job_id=lease.job_id, user_id=lease.user_id)  # fmt: skip
            session.add(LatencyTable(target_id=target.id, space=params.space, kind="lut", artifact_id=artifact.id,
                                     job_id=lease.job_id))  # fmt: skip
        if result["evaluation_cache"] is not None:
            register_artifact(session, StoredFile(**result["evaluation_cache"]), kind=EVALUATION_CACHE,
                              job_id=lease.job_id, user_id=lease.user_id)  # fmt: skip
        ids = []
        for member in result["members"]:
            artifact = register_artifact(session, StoredFile(**member["file"]), kind="bundle", job_id=lease.job_id,
                                         user_id=lease.user_id)  # fmt: skip
            subnet = Subnet(user_id=lease.user_id, supernet_id=params.supernet_id, search_id=search.id,
                            arch_key=member["arch_key"], arch=member["arch"], predicted=member["predicted"],
                            validated=member["validated"], pareto_rank=0, bundle_artifact_id=artifact.id)  # fmt: skip
            session.add(subnet)
            session.flush()
            ids.append(subnet.id)
        return {"search_id": search.id, "subnet_ids": ids}
