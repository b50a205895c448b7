"""Search benchmarks: speed, quality per evaluation, predictor-guided search, predictor quality.

    python -m bench.search --which speed [--lut PATH] [--predictor DIR]
    python -m bench.search --which quality,linas,predictor --supernet runs/fm [--out runs/bench_search]

Figures are mean +- std over `--seeds` seeds and are written to BENCHMARKS.md (`bench.report.record`).
Supernet evaluations are cached as JSON under `--out`, so reruns resume.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import record
from nas.search import CostObjective, search
from nas.space import SearchSpace
from nas.spaces import get_space
from predictors.accuracy import AccuracyPredictor
from predictors.accuracy_data import EvaluationCache, build_dataset, open_cache, sample_spread_over_macs

SPEED_SPACE = "ofa_mbv3_d234_e346_k357_w1.2"


def mean_std(values: list[float], fmt: str = ".3f") -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def random_ofa_mlp(space: SearchSpace, seed: int) -> AccuracyPredictor:
    """OFA's predictor architecture (3 x 400 ReLU) with torch's default initialisation, untrained."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    d = space.encoding_size
    net = nn.Sequential(nn.Linear(d, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                        nn.Linear(400, 1))  # fmt: skip
    pred = AccuracyPredictor(space, "mlp")
    pred.model.weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}  # type: ignore[attr-defined]
    pred.fitted = True
    return pred


def bench_speed(args: argparse.Namespace) -> str:
    space = get_space(SPEED_SPACE)
    if args.predictor:
        acc: Any = AccuracyPredictor.load(args.predictor, space)
        acc_note = f"MLP accuracy predictor loaded from {args.predictor}"
    else:
        acc = random_ofa_mlp(space, 0)
        acc_note = "an untrained MLP with OFA's architecture (3x400 ReLU, random init): speed only, not accuracy"
    if args.lut:
        from predictors.latency import LookupTable

        lat: Any = LookupTable.load(args.lut)
        lat_note = f"lookup table {args.lut} (target {lat.target})"
        if lat.space != space:
            lat_note += " (table space differs from the search space: the dict path is used)"
    else:
        lat = CostObjective(space, "macs", 1e6)
        lat_note = "no --lut given: MACs (nas.cost, the same vectorised per-block gather as a lookup table) as latency"
    bound = float(np.median(lat.predict_matrix(space.sample_matrix(0, 2000)) if hasattr(lat, "predict_matrix") else 0))
    walls, rates = [], []
    for seed in range(args.seeds):
        start = time.perf_counter()
        result = search(space, {"acc": acc, "lat": lat}, {"acc": "max", "lat": "min"}, {"lat": bound},
                        algorithm="evolution", budget=100 * args.generations, seed=seed)  # fmt: skip
        wall = time.perf_counter() - start
        walls.append(wall)
        rates.append(result.n_evaluations / wall)
        print(f"speed seed {seed}: {wall:.3f} s, {result.n_evaluations} evaluations, front {len(result.pareto)}")
    return (
        f"### Speed: evolution, OFA defaults (population 100, {args.generations} generations), {SPEED_SPACE}\n\n"
        f"- accuracy: {acc_note}\n- latency: {lat_note}; constraint lat <= {bound:.4g} (median)\n"
        f"- wall time: {mean_std(walls)} s (bar: <= 2 s); predictor evaluations/s: {mean_std(rates, ',.0f')}\n"
    )


class SupernetData:
    """A trained supernet, its space, and cached real evaluations.

    Predictor data sets are top-1 on the whole validation split; the searches' real evaluations
    (`measure`) use its first `search_val_images` images (all when None) and recalibrate BN on
    `search_recal_images` training images (default: the supernet's), to keep them affordable.
    With `tasks` > 1 the missing evaluations run as that many parallel one-thread Ray tasks
    (`workers.ray_tasks.search.evaluate_on_ray`).
    """

    def __init__(
        self,
        run_dir: str,
        out: Path,
        search_val_images: int | None = None,
        search_recal_images: int | None = None,
        tasks: int = 1,
    ) -> None:
        from nas.data.core import Split
        from nas.train import load_run
        from nas.train.evaluate import data_for

        self.run_dir = run_dir
        self.run = load_run(run_dir)
        self.space = self.run.supernet.space
        self.tasks = tasks
        options: dict[str, Any] = {}
        if search_val_images:
            data, splits = data_for(self.run.supernet)
            val = splits["val"]
            options = {"data": data, "splits": {**splits, "val": Split(val.images[:search_val_images],
                                                                        val.labels[:search_val_images])}}  # fmt: skip
        if search_recal_images:
            options["recal_images"] = search_recal_images
        self.search_images = len(options["splits"]["val"].labels) if "splits" in options else None
        self.search_recal = search_recal_images
        name = f"val{search_val_images or ''}" + (f"_recal{search_recal_images}" if search_recal_images else "")
        # one cache object per file: two objects on one file would overwrite each other's records
        supernet = self.run.supernet
        self.full_val = open_cache(out / "val.json", supernet, "val")
        self.search_cache = self.full_val if name == "val" else open_cache(out / f"{name}.json", supernet, "val")
        self.search_options = options

    def _fill(self, cache: EvaluationCache, archs: list[Any], options: dict[str, Any]) -> np.ndarray:
        """Measure the archs missing from `cache` (in Ray tasks when `tasks` > 1), then look all of them up."""
        if self.tasks > 1:
            from workers.ray_tasks.search import build_dataset_on_ray

            return build_dataset_on_ray(self.run_dir, archs, cache, tasks=self.tasks, **options)[1]
        return build_dataset(self.run.supernet, archs, cache, **options)[1]

    def measure(self, archs: list[Any]) -> np.ndarray:
        """Top-1 for a search's real evaluations."""
        return self._fill(self.search_cache, archs, self.search_options)

    def dataset(self, n: int, seed: int) -> tuple[list[Any], np.ndarray]:
        """`n` subnets spread over MACs and their top-1 on the whole validation split."""
        archs = [self.space.canonical(a) for a in sample_spread_over_macs(self.space, n, rng=seed)]
        return archs, self._fill(self.full_val, archs, {})


def hv_curve(result: Any, ref: dict[str, float], points: list[int]) -> list[float]:
    from nas.search.result import SearchResult

    out = []
    for p in points:
        part = SearchResult(
            result.problem, result.matrix[:p], result.values[:p], result.generation[:p], result.algorithm
        )
        out.append(part.hypervolume(ref))
    return out


def evaluations_to_reach(result: Any, ref: dict[str, float], target: float, step: int) -> int | None:
    for p in range(step, result.n_evaluations + 1, step):
        if hv_curve(result, ref, [p])[0] >= target:
            return p
    return None


def second_objective(args: argparse.Namespace, space: SearchSpace) -> tuple[Any, str, str]:
    """The latency table given with --latency (objective "lat", ms), else MACs in millions ("mmacs")."""
    if args.latency:
        from predictors.latency import LookupTable

        table = LookupTable.load(args.latency)
        return table, "lat", f"latency from the {table.target} lookup table {args.latency} (ms)"
    return CostObjective(space, "macs", 1e6), "mmacs", "MACs in millions (no --latency table given)"


def bench_quality(args: argparse.Namespace, data: SupernetData) -> str:
    archs, acc = data.dataset(args.n_train, seed=1000)
    pred = AccuracyPredictor(data.space, "mlp").fit(archs, acc)
    cost, second, cost_note = second_objective(args, data.space)
    sample = data.space.sample_matrix(0, 5000)
    ref = {"acc": float(pred.predict_matrix(sample).min()), second: float(cost.predict_matrix(sample).max())}
    budget, step = args.budget, max(1, args.budget // 20)
    points = list(range(step, budget + 1, step))
    runs: dict[str, dict[str, Any]] = {
        "nsga2": {"algorithm": "nsga2"},
        "random": {"algorithm": "random"},
        "optuna-nsga2": {"algorithm": "optuna", "sampler": "nsga2"},
        "optuna-tpe": {"algorithm": "optuna", "sampler": "tpe"},
    }
    quarter, half = points[len(points) // 4 - 1], points[len(points) // 2 - 1]
    lines = [
        f"### Quality per evaluation (predictor fitted on {len(archs)} real evaluations; objective 2: {cost_note})\n",
        f"reference {ref}; hypervolume at {quarter}, {half}, {budget} evaluations:\n",
    ]
    finals: dict[str, list[float]] = {}
    nsga2_results: list[Any] = []

    def run(kw: dict[str, Any], seed: int) -> Any:
        return search(data.space, {"acc": pred, second: cost}, {"acc": "max", second: "min"}, budget=budget,
                      seed=seed, **kw)  # fmt: skip

    def reach(results: list[Any], target: float) -> list[float]:
        hits = [evaluations_to_reach(result, ref, target, step) for result in results]
        return [float(hit) if hit is not None else float("nan") for hit in hits]

    for name, kw in runs.items():
        curves = []
        for seed in range(args.seeds):
            result = run(kw, seed)
            curves.append(hv_curve(result, ref, points))
            if name == "nsga2":
                nsga2_results.append(result)
        c = np.array(curves)
        finals[name] = c[:, -1].tolist()
        q, h = len(points) // 4 - 1, len(points) // 2 - 1
        lines.append(
            f"- {name}: {mean_std(c[:, q].tolist(), '.5f')} | {mean_std(c[:, h].tolist(), '.5f')} | "
            f"{mean_std(c[:, -1].tolist(), '.5f')}"
        )
    target = float(np.mean(finals["optuna-nsga2"]))
    for quantile in (0.25, 0.5, 0.75):
        cap = float(np.quantile(cost.predict_matrix(sample), quantile))
        accs = [max((v["acc"] for _, v in search(data.space, {"acc": pred, second: cost}, {"acc": "max"},
                     {second: cap}, algorithm="evolution", budget=budget, seed=s).pareto), default=float("nan"))
                for s in range(args.seeds)]  # fmt: skip
        lines.append(f"- evolution, {second} <= {cap:.4g}: best predicted acc {mean_std(accs, '.4f')}")
    lines.append(f"\nnsga2 evaluations to reach Optuna NSGA-II's final hypervolume ({target:.4g}): "
                 f"{mean_std(reach(nsga2_results, target), '.0f')} of {budget} (bar: <= {budget // 2})")  # fmt: skip
    if args.reach_seeds > args.seeds:
        # the statistic varies a lot between seeds: repeat just nsga2 and Optuna NSGA-II on more of them
        extra = range(args.seeds, args.reach_seeds)
        optuna_finals = finals["optuna-nsga2"] + [run(runs["optuna-nsga2"], s).hypervolume(ref) for s in extra]
        wide_target = float(np.mean(optuna_finals))
        wide_results = nsga2_results + [run(runs["nsga2"], s) for s in extra]
        wide = reach(wide_results, wide_target)
        within = sum(hit <= budget // 2 for hit in wide)
        fine = list(range(step, budget + 1, step))
        mean_curve = np.mean([hv_curve(result, ref, fine) for result in wide_results], axis=0)
        crossing = next((p for p, hv in zip(fine, mean_curve, strict=True) if hv >= wide_target), None)
        at_half = float(mean_curve[fine.index(half)])
        lines.append(
            f"over seeds 0-{args.reach_seeds - 1}, against Optuna NSGA-II's mean final hypervolume {wide_target:.4g}: "
            f"nsga2's mean hypervolume at {half} evaluations is {at_half:.4g} and its mean curve reaches the target at "
            f"{crossing} evaluations; per seed {mean_std(wide, '.0f')}, median {np.nanmedian(wide):.0f}, "
            f"within {budget // 2} in {within} of {len(wide)}"
        )
    return "\n".join(lines) + "\n"


def bench_linas(args: argparse.Namespace, data: SupernetData) -> str:
    mmacs = CostObjective(data.space, "macs", 1e6)
    objectives: dict[str, Callable[[list[Any]], Any]] = {"acc": data.measure, "mmacs": mmacs}
    sample = data.space.sample_matrix(0, 5000)
    budget = args.real_budget
    step = max(1, budget // 40)
    results: dict[str, list[Any]] = {}
    for name in ["random", *args.linas_against, "linas"]:
        kw: dict[str, Any] = {"population_size": max(4, budget // 10)} if name == "nsga2" else {}
        results[name] = [search(data.space, objectives, {"acc": "max"}, algorithm=name, budget=budget, seed=s, **kw)
                         for s in range(args.seeds)]  # fmt: skip
    # Reference: the worst top-1 any run saw (so the box measures the front, not the distance to 0%)
    worst = min(float(r.values[:, r.names.index("acc")].min()) for rs in results.values() for r in rs)
    ref = {"acc": worst, "mmacs": float(mmacs.predict_matrix(sample).max())}
    finals = {n: [r.hypervolume(ref) for r in rs] for n, rs in results.items()}
    target = float(np.mean(finals["random"]))
    images = f"the first {data.search_images} images of val" if data.search_images else "val"
    if data.search_recal:
        images += f", BN recalibrated on {data.search_recal} training images"
    lines = [f"### Expensive evaluations (real supernet top-1 on {images}, {budget} evaluations)\n",
             f"reference {ref}\n"]  # fmt: skip
    lines += [f"- {n}: final hypervolume {mean_std(v, '.4g')}" for n, v in finals.items()]
    lines.append(f"\nevaluations to reach random's mean final hypervolume ({target:.4g}; nan: not reached):")
    for name in [*args.linas_against, "linas"]:
        reach = [evaluations_to_reach(r, ref, target, step) for r in results[name]]
        reached = [float(x) if x is not None else float("nan") for x in reach]
        bar = f" (bar: <= {budget // 4})" if name == "linas" else ""
        per_seed = ", ".join("nan" if x is None else str(x) for x in reach)
        lines.append(f"- {name}: {mean_std(reached, '.0f')}{bar}; per seed {per_seed}")
    return "\n".join(lines) + "\n"


def bench_predictor(args: argparse.Namespace, data: SupernetData) -> str:
    archs, acc = data.dataset(args.n_train, seed=1000)
    test_archs, test_acc = data.dataset(args.n_test, seed=2000)
    lines = [f"### Predictor quality ({len(archs)} training subnets, {len(test_archs)} held-out, val split)\n"]
    for kind in ("mlp", "gbm"):
        scores = [AccuracyPredictor(data.space, kind, seed=s).fit(archs, acc).evaluate(test_archs, test_acc)
                  for s in range(args.seeds)]  # fmt: skip
        lines.append(f"- {kind}: Kendall τ {mean_std([s.kendall_tau or 0.0 for s in scores])} (bar >= 0.7), "
                     f"RMSE {mean_std([100 * s.rmse for s in scores], '.2f')} points")  # fmt: skip
    curve = []
    for share in (0.25, 0.5, 0.75, 1.0):
        n = max(2, int(share * len(archs)))
        picks = [np.random.default_rng(s).permutation(len(archs))[:n] for s in range(args.seeds)]
        taus = [AccuracyPredictor(data.space, "gbm").fit([archs[i] for i in p], acc[p]).evaluate(test_archs, test_acc)
                .kendall_tau or 0.0 for p in picks]  # fmt: skip
        curve.append(f"{n}: {mean_std(taus)}")
    lines.append(f"- gbm learning curve (training subnets: τ): {'; '.join(curve)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--which", default="speed,quality,linas,predictor")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lut", help="predictors.latency.LookupTable file for the speed run")
    parser.add_argument("--latency", help="quality: the small-input preset's LookupTable file (else MACs)")
    parser.add_argument("--predictor", help="saved AccuracyPredictor directory for the speed run (w1.2 space)")
    parser.add_argument("--generations", type=int, default=500, help="speed run: generations of 100")
    parser.add_argument("--supernet", help="train_supernet run directory (quality, linas, predictor)")
    parser.add_argument("--out", default="runs/bench_search", help="cache of real evaluations")
    parser.add_argument("--budget", type=int, default=2000, help="quality: evaluations per search")
    parser.add_argument(
        "--reach-seeds", type=int, default=0, help="quality: nsga2 vs Optuna NSGA-II on this many seeds"
    )
    parser.add_argument("--real-budget", type=int, default=200, help="linas: real evaluations per search")
    parser.add_argument(
        "--linas-against", type=lambda text: [w for w in text.split(",") if w], default=["nsga2"],
        help="linas: algorithms to run besides random and linas (comma-separated; '' for none)",
    )  # fmt: skip
    parser.add_argument("--search-val-images", type=int, help="linas: real evaluations on this many val images")
    parser.add_argument("--search-recal-images", type=int, help="linas: BN recalibration images per real evaluation")
    parser.add_argument(
        "--tasks", type=int, default=1, help="real evaluations as this many parallel one-thread Ray tasks"
    )
    parser.add_argument("--n-train", type=int, default=1000, help="predictor training subnets")
    parser.add_argument("--n-test", type=int, default=200, help="held-out subnets")
    parser.add_argument("--no-record", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    which = [w.strip() for w in args.which.split(",") if w.strip()]
    unknown = sorted(set(which) - {"speed", "quality", "linas", "predictor"})
    if unknown:
        parser.error(f"unknown --which {unknown}; choose from speed, quality, linas, predictor")
    needs_supernet = [w for w in which if w != "speed"]
    if needs_supernet and not args.supernet:
        parser.error(f"--which {','.join(needs_supernet)} needs --supernet RUN_DIR")
    data = (
        SupernetData(args.supernet, Path(args.out), args.search_val_images, args.search_recal_images, args.tasks)
        if needs_supernet
        else None
    )
    sections: dict[str, Callable[..., str]] = {
        "speed": bench_speed,
        "quality": bench_quality,
        "linas": bench_linas,
        "predictor": bench_predictor,
    }
    for name in which:
        body = sections[name](args) if name == "speed" else sections[name](args, data)
        print(body)
        if not args.no_record:
            # one BENCHMARKS.md section per part: parts are often re-measured alone, on other days and machines
            record("bench.search", body, part=name)


if __name__ == "__main__":
    main()
