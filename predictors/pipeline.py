"""A search of a trained supernet as one library call: `run_search` returns the validated, exported front.

The stages, in order (each reports progress and can be stopped through the reporter):

1. latency models: each target's model (a lookup table or a learned predictor); a target without
   one gets its table built now on its device;
2. a constraint on MACs, parameters or a table latency that no subnet of the space can meet
   (its exact range, `nas.search.feasibility`) ends the call here, with an empty front and the
   reason;
3. if ``accuracy`` is an objective, `predictor_samples` subnets (spread over MACs) are evaluated
   on the validation split (those in the evaluation cache are not evaluated again) and the
   gradient-boosted accuracy predictor is fitted on 80% of them (scored on the other 20%, then
   refitted on all);
4. `nas.search.search` with the spec's algorithm, budget and seed;
5. delivery: a BN-recalibrated bundle (ONNX + safetensors + arch.json) of every front member, up
   to `export_limit`, validated on that very file. Only what was measured is shown: a member's
   validated accuracy is the top-1 of its exported bundle on the test split (ONNX Runtime, the
   bundle's own preprocessing, `nas.bundle_eval.score_bundle`); its latency on a target with a
   device (`predictors.latency.devices`: this machine, or a remote target's agents) is measured end
   to end on the bundle's ONNX file there, else it is the model's value. The measurements on a
   target are bracketed by two of a reference subnet (the first member); when those disagree
   beyond the measure settings' ``cv_threshold`` the front is measured again, and the result's
   ``drift`` says so per target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from predictors.accuracy_data import EvaluationCache
from predictors.latency import LearnedLatencyPredictor, LookupTable, Target
from predictors.latency.devices import LatencyDevice, as_device
from predictors.search_spec import SearchSpec, latency_objective

if TYPE_CHECKING:
    from nas.search import SearchResult
    from nas.space import Arch
    from nas.supernet import OFAMobileNetV3

PREDICTOR_SPLIT = "val"
"""The split the accuracy predictor's measurements are taken on (the test split validates)."""
# LightGBM, not the MLP: fitted on ~100 noisy validation accuracies, the MLP ranked held-out subnets at
# Kendall tau 0.30 and predicted up to 0.99 for front members that scored 0.96 (trees do not extrapolate
# past the best measured subnet); gbm: tau 0.48, front error 0.005 instead of 0.007-0.011 (NOTES.md)
PREDICTOR_KIND = "gbm"
LatencyModel = LookupTable | LearnedLatencyPredictor
"""A target's latency model: a per-layer table (measured or imported) or a learned end-to-end predictor."""


class Reporter(Protocol):
    """Where `run_search` reports (e.g. a job's `WorkContext`); `progress` may raise to stop the work."""

    def progress(self, **data: Any) -> None:
        """A progress event with JSON-able values, ``stage`` among them."""

    def log(self, message: str, level: str = "info") -> None:
        """A log line."""


class Silent:
    """A reporter that drops every report."""

    def progress(self, **data: Any) -> None:
        """Nothing."""

    def log(self, message: str, level: str = "info") -> None:
        """Nothing."""


class LatencyModelMismatchError(Exception):
    """A latency table lacks an entry the search space needs."""


class PredictorSummary(BaseModel):
    """How the accuracy predictor was fitted.

    Attributes:
        kind: the `predictors.accuracy` kind.
        samples: the subnets it was fitted on.
        held_out: its scores on the held-out fifth (None when that fifth had under two subnets).
        evaluated_now: subnets measured by this call because the evaluation cache lacked them.
    """

    kind: str
    samples: int
    held_out: dict[str, Any] | None
    evaluated_now: int


@dataclass(frozen=True)
class FrontMember:
    """One exported and validated member of the front.

    Attributes:
        arch: the subnet.
        arch_key: its `SearchSpace.key`.
        predicted: the objective values the search saw.
        validated: the values measured on the exported bundle (MACs and parameters are exact already).
        sources: how each validated value was obtained (``bundle_onnx_test``, ``measured``, ``table``).
        bundle: the exported bundle (a zip).
    """

    arch: Arch
    arch_key: str
    predicted: dict[str, float]
    validated: dict[str, float]
    sources: dict[str, str]
    bundle: Path


@dataclass
class ValidatedFront:
    """What `run_search` returns.

    Attributes:
        members: the exported front (an even spread of at most `export_limit` members).
        n_evaluations: objective evaluations the search made.
        reason: why the front is empty, if it is.
        hypervolume: of the whole front, against `hypervolume_reference` (0 without members).
        hypervolume_reference: per objective, the front's worst value.
        predictor: how the accuracy predictor was fitted (None without an accuracy objective).
        drift: per target with a device, the reference subnet's drift (``reference`` is its arch key).
        measured: the accuracies this call measured (None when it measured none).
        built_tables: the latency tables built by this call, by target.
    """

    members: list[FrontMember] = field(default_factory=list)
    n_evaluations: int = 0
    reason: str | None = None
    hypervolume: float = 0.0
    hypervolume_reference: dict[str, float] = field(default_factory=dict)
    predictor: PredictorSummary | None = None
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    measured: EvaluationCache | None = None
    built_tables: dict[str, LookupTable] = field(default_factory=dict)


def run_search(
    supernet: OFAMobileNetV3,
    spec: SearchSpec,
    *,
    out_dir: Path,
    evaluations: EvaluationCache | None = None,
    latency: Mapping[str, LatencyModel] | None = None,
    measurable: Mapping[str, LatencyDevice | Target] | None = None,
    report: Reporter | None = None,
) -> ValidatedFront:
    """Search a trained supernet, then export and validate its front (see the module docstring).

    Args:
        supernet: the trained supernet (with its data metadata: mean, std, classes).
        spec: the search.
        out_dir: where the bundles and this call's accuracy measurements (``accuracy_val.json``,
            read again by a repeated call, so that it resumes) are written.
        evaluations: accuracies measured earlier on this supernet's validation split (not changed).
        latency: a latency model per target; a target without one gets a table measured now (it
            must be in `measurable`).
        measurable: the targets' devices (a `Target` is measured on this machine): their tables
            can be built, and the front's latencies on them are measured end to end.
        report: progress and log lines (default: none).

    Raises:
        ValueError: a target has no table and cannot be measured here.
        LatencyModelMismatchError: a table lacks an entry the space needs.
    """
    from nas.search import CostObjective

    report = report or Silent()
    devices = {name: as_device(target) for name, target in (measurable or {}).items()}
    space = supernet.space
    front = ValidatedFront()
    objectives: dict[str, Any] = {"macs": CostObjective(space, "macs"), "params": CostObjective(space, "params")}
    tables = dict(latency or {})
    for name in spec.targets:
        if name not in tables:
            tables[name] = front.built_tables[name] = _build_table(supernet, spec, name, devices, report)
        objectives[latency_objective(name)] = tables[name]
    infeasible = _proven_infeasible(spec, space, objectives)
    if infeasible is not None:  # before the predictor, which costs minutes of real evaluations
        report.log(infeasible)
        front.reason = infeasible
        return front
    if "accuracy" in spec.objectives:
        objectives["accuracy"], front.predictor, front.measured = _accuracy_predictor(
            supernet, spec, evaluations, out_dir, report
        )
    result = _search(spec, space, objectives, report)
    front.members, front.drift = _export_and_validate(supernet, spec, result, tables, devices, out_dir, report)
    front.n_evaluations, front.reason = result.n_evaluations, result.reason
    front.hypervolume_reference = {
        n: float(result.values[:, i].min() if d == "max" else result.values[:, i].max())
        for i, (n, d) in enumerate(zip(result.names, result.problem.directions, strict=True))
    }
    front.hypervolume = result.hypervolume(front.hypervolume_reference) if front.members else 0.0
    return front


def _build_table(
    supernet: OFAMobileNetV3, spec: SearchSpec, name: str, devices: Mapping[str, LatencyDevice], report: Reporter
) -> LookupTable:
    if name not in devices:
        raise ValueError(f"target {name!r} has no latency table and cannot be measured here")
    report.log(f"target {name!r} has no table for {supernet.space.name}: measuring one")

    def progress(done: int, total: int, _key: str) -> None:  # once per batch of `TABLE_CHUNK` layers
        report.progress(stage="latency_table", target=name, done=done, total=total)

    return LookupTable.build(supernet.space, devices[name], progress=progress, settings=spec.measure_settings)


def _proven_infeasible(spec: SearchSpec, space: Any, objectives: dict[str, Any]) -> str | None:
    """Why a constraint on a cheap objective (MACs, parameters, a latency table) cannot be met, if it is proven.

    The exact range of these objectives over the space is computed from their per-block terms
    (`nas.search.feasibility`), so a bound outside it is unreachable whatever the search does.
    """
    from nas.search.feasibility import infeasible_reason
    from nas.search.problem import Problem

    names = [name for name in spec.constraints if name in objectives]
    if not names:
        return None
    problem = Problem.build(
        space, {n: objectives[n] for n in names}, {n: spec.directions[n] for n in names},
        {n: spec.constraints[n] for n in names},
    )  # fmt: skip
    reason = infeasible_reason(problem)
    return None if reason is None else f"{reason}; the search did not run"


def _accuracy_predictor(
    supernet: OFAMobileNetV3, spec: SearchSpec, known: EvaluationCache | None, out_dir: Path, report: Reporter
) -> tuple[Any, PredictorSummary, EvaluationCache | None]:
    """The accuracy predictor fitted on subnets in `known` or measured now, its summary, the new measurements."""
    from predictors.accuracy import AccuracyPredictor
    from predictors.accuracy_data import build_dataset, sample_spread_over_macs, supernet_fingerprint

    space = supernet.space
    fingerprint = supernet_fingerprint(supernet)
    known = known or EvaluationCache(None, space, PREDICTOR_SPLIT, fingerprint)
    cache = EvaluationCache(out_dir / f"accuracy_{PREDICTOR_SPLIT}.json", space, PREDICTOR_SPLIT, fingerprint)
    cache.merge(known)
    archs = sample_spread_over_macs(space, spec.predictor_samples, rng=spec.seed)

    def progress(done: int, total: int) -> None:
        report.progress(stage="predictor", done=done, total=total)

    archs, acc = build_dataset(supernet, archs, cache=cache, split=PREDICTOR_SPLIT, progress=progress)
    measured = cache.difference(known)
    split = max(1, len(archs) * 4 // 5)
    predictor = AccuracyPredictor(space, PREDICTOR_KIND, seed=spec.seed).fit(archs[:split], acc[:split])
    score = predictor.evaluate(archs[split:], acc[split:]) if len(archs) - split > 1 else None
    predictor.fit(archs, acc)  # scored on the held-out fifth, then searched with all the measurements
    report.log(
        f"accuracy predictor fitted on {split} subnets, {len(measured.records)} of {len(archs)} evaluated now"
        + (f": {score}" if score else "")
    )
    summary = PredictorSummary(kind=PREDICTOR_KIND, samples=len(archs), held_out=asdict(score) if score else None,
                               evaluated_now=len(measured.records))  # fmt: skip
    return predictor, summary, measured if measured.records else None


def _search(spec: SearchSpec, space: Any, objectives: dict[str, Any], report: Reporter) -> SearchResult:
    from nas.search import search

    def progress(event: Any) -> None:
        report.progress(stage="search", generation=event.generation, evaluations=event.evaluations,
                        budget=event.budget, front_size=event.front_size, best=event.best)  # fmt: skip

    try:
        return search(
            space, {o: objectives[o] for o in spec.objectives}, spec.directions, spec.constraints,
            algorithm=spec.algorithm, budget=spec.budget, seed=spec.seed, progress=progress,
        )  # fmt: skip
    except KeyError as error:  # a table without an entry the space needs
        raise LatencyModelMismatchError(str(error.args[0])) from None


def _export_and_validate(
    supernet: OFAMobileNetV3, spec: SearchSpec, result: SearchResult, tables: Mapping[str, LatencyModel],
    devices: Mapping[str, LatencyDevice], out_dir: Path, report: Reporter,
) -> tuple[list[FrontMember], dict[str, dict[str, Any]]]:  # fmt: skip
    """The front's members, exported and validated, and per target with a device the drift of its measurements.

    Every member's bundle is exported and scored first; then, per target with a device, the members'
    ONNX files are measured as one batch between two measurements of the first member (the
    reference), and measured again when the reference drifted (`predictors.latency.drift`).
    """
    from nas.bundle_eval import score_bundle
    from nas.export import export_bundle
    from nas.train import BNCalibration
    from nas.train.evaluate import data_for
    from predictors.latency.drift import measure_batch

    space = supernet.space
    chosen = result.pareto
    if len(chosen) > spec.export_limit:  # keep an even spread along the front (sorted by objective 1)
        keep = sorted({round(i * (len(chosen) - 1) / max(1, spec.export_limit - 1))
                       for i in range(spec.export_limit)})  # fmt: skip
        chosen = [chosen[i] for i in keep]
    calibration = BNCalibration.of_training_data(supernet)
    test = data_for(supernet)[1]["test"]
    members = []
    for i, (arch, predicted) in enumerate(chosen):
        report.progress(stage="validate", done=i, total=len(chosen))
        path = export_bundle(supernet, arch, out_dir / f"bundle_{i}.zip", calibration=calibration, archive=True)
        validated = {k: v for k, v in predicted.items() if k in ("macs", "params")}  # exact already
        sources = {}
        if "accuracy" in spec.objectives:  # measured on the delivered file, as its user will run it
            validated["accuracy"] = score_bundle(path, test.images, test.labels).top1
            sources["accuracy"] = "bundle_onnx_test"
        for name, table in tables.items():
            if name not in devices:
                validated[latency_objective(name)] = float(table.predict([arch])[0])
                sources[latency_objective(name)] = "learned" if isinstance(table, LearnedLatencyPredictor) else "table"
        members.append(FrontMember(arch, space.key(arch), predicted, validated, sources, path))
    drift: dict[str, dict[str, Any]] = {}
    targets = [name for name in tables if name in devices] if members else []
    settings = spec.measure_settings
    onnx = [_onnx_file(member.bundle) for member in members] if targets else []
    for name in targets:

        def progress(done: int, total: int, name: str = name) -> None:
            report.progress(stage="measure", target=name, done=done, total=total)

        measured, check = measure_batch(onnx, devices[name], settings, progress, label=f"validate/{name}")
        for member, measurement in zip(members, measured, strict=True):
            member.validated[latency_objective(name)] = measurement.median_ms
            member.sources[latency_objective(name)] = "measured"
        drift[name] = {"reference": members[0].arch_key, **check.to_dict()}
        if check.remeasured:
            report.log(f"target {name!r}: the reference subnet's latency drifted during validation: {drift[name]}",
                       "warning")  # fmt: skip
    return members, drift


def _onnx_file(bundle: Path) -> Path:
    """The bundle's ONNX model, written beside it (``bundle_<i>.onnx``) for end-to-end measurement."""
    from nas.export import ONNX_FILE, read_bundle_files

    path = bundle.with_suffix(".onnx")
    path.write_bytes(read_bundle_files(bundle)[1][ONNX_FILE])
    return path
