"""Latency models on `cpu-ort`: lookup-table sum, learned predictor and a MACs baseline vs measurements.

    python -m bench.latency                              # both presets, 300 subnets each (run on an idle machine)
    python -m bench.latency --subnets 12 --no-record     # a quick check that it works
    python -m bench.latency --remote --subnets 100       # a remote target's models, built by two local agents
    python -m bench.latency --presets ofa_mbv3_d234_e346_k357_w1.0 --subnets 12 --resolutions 128,224 --no-record
    python -m bench.latency --batch --subnets 200         # the learned predictor at batch 1 vs 32 (section "batch")

Per preset (the 32 px one and ``ofa_mbv3_d234_e346_k357_w1.0`` over all its resolutions):
measures N random subnets end to end (ONNX Runtime, fresh weights), builds the per-layer table,
fits the learned predictor on the first 100 and the first 200 subnets (with and without the
table as a feature) and a MACs-proportional baseline (one scale fitted on the same subnets),
and reports MAPE, % within ±10% and Kendall τ on the remaining subnets. The noise floor is the
agreement of two measurement passes over the same subnets; the cost is seconds per subnet
(export + measurement) and per table. Everything measured is cached in --out as JSON, so a
rerun resumes.

With ``--batch``: the same N subnets of the 32 px preset measured at batch 1 (where per-operator
overhead dominates, as on a GPU) and batch 32 (where compute does), and the learned predictor
(no table) fitted and tested at each, beside the MACs baseline.

With ``--remote``: the 32 px preset's models built by the service through two agents of a remote
target (`bench.latency_remote`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from bench.report import record
from nas.cost import macs
from nas.space import Arch, SearchSpace
from nas.spaces import get_space
from predictors.latency import (
    LearnedLatencyPredictor,
    LookupTable,
    MeasureSettings,
    Target,
    get_target,
    measure_onnx,
)
from predictors.latency.learned import PREDICTOR_FORMAT, LatencyMetrics, latency_metrics
from predictors.latency.models import subnet_onnx

console = Console()
PRESETS = ("ofa_mbv3_d234_e346_k357_32px", "ofa_mbv3_d234_e346_k357_w1.0")
TARGET = "cpu-ort"


class Cache:
    """A JSON file of {key: record}, written after every new record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.data:
            self.data[key] = make()
            self.path.write_text(json.dumps(self.data))
        return self.data[key]


def measure_subnet(space: SearchSpace, arch: Arch, settings: MeasureSettings) -> dict[str, Any]:
    t = time.perf_counter()
    model = subnet_onnx(space, arch)
    m = measure_onnx(model, get_target(TARGET), settings)
    return {"arch": arch, "measurement": m.to_dict(), "seconds": time.perf_counter() - t}


def measure_all(space: SearchSpace, archs: list[Arch], cache: Cache, settings: MeasureSettings, label: str) -> Any:
    out = []
    for i, arch in enumerate(archs):
        out.append(cache.get(space.key(arch), lambda a=arch: measure_subnet(space, a, settings)))  # type: ignore[misc]
        if (i + 1) % 25 == 0 or i + 1 == len(archs):
            console.print(f"  {label}: {i + 1}/{len(archs)} subnets")
    return out


def build_table(space: SearchSpace, path: Path, settings: MeasureSettings) -> tuple[LookupTable, float]:
    meta = path.with_suffix(".seconds")
    if path.exists() and meta.exists():
        return LookupTable.load(path), float(meta.read_text())

    def progress(done: int, total: int, key: str) -> None:
        if done % 100 == 0 or done == total:
            console.print(f"  table: {done}/{total} layers")

    t = time.perf_counter()
    table = LookupTable.build(space, TARGET, progress=progress, settings=settings)
    seconds = time.perf_counter() - t
    table.save(path)
    meta.write_text(f"{seconds:.3f}")
    return table, seconds


def row(name: str, train: int, model: str, m: LatencyMetrics) -> str:
    return f"| {name} | {train} | {model} | {m.n} | {m.mape:.2f} | {100 * m.within_10:.1f} | {m.kendall_tau:.3f} |"


def macs_baseline(macs_m: np.ndarray, y: np.ndarray, train: slice, test: slice) -> LatencyMetrics:
    """Metrics on `test` of latency = scale x MACs, the scale fitted on `train`."""
    ratio = macs_m[train] / y[train]
    scale = float(ratio.sum() / (ratio**2).sum())  # least relative error of y ~ scale * MACs
    return latency_metrics(scale * macs_m[test], y[test])


def noise_floor(first: list[float], again: list[float]) -> str:
    """How far two measurement passes over the same subnets differ."""
    a, b = np.array(first), np.array(again)
    rel = np.abs(b - a) / a
    return f"median |rel. diff| {100 * np.median(rel):.2f}%, {100 * (rel <= 0.10).mean():.1f}% within ±10%"


def bench_preset(
    name: str, n: int, repeats: int, out: Path, settings: MeasureSettings, seed: int, resolutions: list[int] | None
) -> list[str]:
    space = get_space(name, resolutions=resolutions)
    folder = out / (name if resolutions is None else f"{name}_r{'-'.join(map(str, space.resolutions))}")
    folder.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]{name}[/]: {n} subnets, {len(space.resolutions)} resolutions")
    unique = {space.key(a): a for a in space.sample(seed, 2 * n)}
    archs = list(unique.values())[:n]
    records = measure_all(space, archs, Cache(folder / "subnets.json"), settings, "pass 1")
    second = measure_all(space, archs[:repeats], Cache(folder / "repeats.json"), settings, "pass 2")
    table, table_s = build_table(space, folder / "table.json", settings)
    y = np.array([r["measurement"]["median_ms"] for r in records])
    table_ms = table.predict(archs)
    macs_m = macs(space, archs).astype(np.float64)

    sizes = [s for s in (100, 200) if s < n] or [max(5, n // 2)]
    lines = []
    for size in sizes:
        train, test = slice(0, size), slice(size, n)
        lines.append(row(name, size, "MACs x fitted scale", macs_baseline(macs_m, y, train, test)))
        lines.append(row(name, size, "table sum", latency_metrics(table_ms[test], y[test])))
        for label, tab in (("learned", None), ("learned + table", table)):
            lat = LearnedLatencyPredictor(space, tab).fit(archs[train], y[train])
            lines.append(row(name, size, label, lat.evaluate(archs[test], y[test])))
    for line in lines:
        console.print(line)

    first = [r["measurement"]["median_ms"] for r in records[:repeats]]
    again = [r["measurement"]["median_ms"] for r in second]
    noisy = sum(r["measurement"]["noisy"] for r in records)
    per_subnet = statistics.median(r["seconds"] for r in records)
    cost = (
        f"- {name}: noise floor over {len(first)} subnets measured twice: {noise_floor(first, again)}; "
        f"{noisy}/{n} measurements flagged noisy; latency {y.min():.2f}-{y.max():.2f} ms; "
        f"cost {per_subnet:.2f} s per subnet (export + measure), table {len(table)} entries "
        f"({len(table.resolutions)} resolutions) in {table_s:.0f} s"
    )
    console.print(cost)
    return [*lines, cost]


# ---------------------------------------------------------------- batch 1 vs batch 32 (--batch)

BATCH_PRESET = "ofa_mbv3_d234_e346_k357_32px"
BATCH_SIZES = (1, 32)


def batch_targets() -> dict[int, Target]:
    """`cpu-ort` at each of `BATCH_SIZES` (batch 1 is launch-bound at 32 px, batch 32 compute-bound)."""
    base = get_target(TARGET)
    return {b: dataclasses.replace(base, name=f"{TARGET}-b{b}", batch_size=b) for b in BATCH_SIZES}


def measure_batches(space: SearchSpace, arch: Arch, settings: MeasureSettings) -> dict[str, Any]:
    """One export of a subnet, measured at every batch size: {"ms": {batch: median ms}, "noisy": [batch]}."""
    t = time.perf_counter()
    model = subnet_onnx(space, arch)
    found = {b: measure_onnx(model, target, settings) for b, target in batch_targets().items()}
    return {
        "arch": arch,
        "ms": {str(b): m.median_ms for b, m in found.items()},
        "noisy": [b for b, m in found.items() if m.noisy],
        "seconds": time.perf_counter() - t,
    }


def bench_batch(n: int, repeats: int, out: Path, settings: MeasureSettings, seed: int) -> str:
    """The learned predictor on the same subnets at batch 1 and batch 32; returns the section's body.

    The learned rows of each predictor format (feature set) are kept in the cache folder, so that a run
    of an older checkout on the same measurements shows up beside the current one.
    """
    space = get_space(BATCH_PRESET)
    folder = out / f"{BATCH_PRESET}_batch"
    folder.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]{BATCH_PRESET}[/]: {n} subnets at batch sizes {BATCH_SIZES}")
    archs = list({space.key(a): a for a in space.sample(seed, 2 * n)}.values())[:n]
    records, second = [], []
    cache, repeat_cache = Cache(folder / "subnets.json"), Cache(folder / "repeats.json")
    for i, arch in enumerate(archs):
        records.append(cache.get(space.key(arch), partial(measure_batches, space, arch, settings)))
        if i < repeats:
            second.append(repeat_cache.get(space.key(arch), partial(measure_batches, space, arch, settings)))
        if (i + 1) % 25 == 0:
            console.print(f"  {i + 1}/{n} subnets")

    results_path = folder / f"results_n{n}_seed{seed}_runs{settings.runs}.json"
    learned: dict[str, dict[str, str]] = json.loads(results_path.read_text()) if results_path.exists() else {}
    current = learned[str(PREDICTOR_FORMAT)] = {}
    macs_m = macs(space, archs).astype(np.float64)
    baselines, notes = {}, []
    half = n // 2
    test = slice(half, n)  # one test set for every training size
    for b in BATCH_SIZES:
        y = np.array([r["ms"][str(b)] for r in records])
        for size in [s for s in (20, 50, 100) if s <= half] or [max(5, half)]:
            train = slice(0, size)
            baselines[f"{b}/{size}"] = row(str(b), size, "MACs x fitted scale", macs_baseline(macs_m, y, train, test))
            lat = LearnedLatencyPredictor(space).fit(archs[train], y[train])
            model = f"learned, predictor format {PREDICTOR_FORMAT}"
            current[f"{b}/{size}"] = row(str(b), size, model, lat.evaluate(archs[test], y[test]))
        noisy = sum(b in r["noisy"] for r in records)
        first, again = [r["ms"][str(b)] for r in records[:repeats]], [r["ms"][str(b)] for r in second]
        notes.append(
            f"- batch {b}: latency {y.min():.2f}-{y.max():.2f} ms; {noisy}/{n} measurements flagged noisy; "
            f"noise floor over {len(first)} subnets measured twice: {noise_floor(first, again)}"
        )
    results_path.write_text(json.dumps(learned))
    rows = [
        line
        for key, baseline in baselines.items()
        for line in [baseline, *(learned[f][key] for f in sorted(learned, key=int) if key in learned[f])]
    ]
    per_subnet = statistics.median(r["seconds"] for r in records)
    notes.append(f"- cost {per_subnet:.2f} s per subnet (export + both measurements)")
    for line in rows + notes:
        console.print(line)
    return "\n".join(
        [
            f"Target `{TARGET}` (ONNX Runtime CPU, 1 thread) at batch sizes {', '.join(map(str, BATCH_SIZES))} "
            f"on the same {n} random subnets of `{BATCH_PRESET}` (one export each), {settings.runs} timed runs "
            "per measurement (median). The learned predictor (no table) is fitted on the first `train` subnets "
            "and tested on the last half; rows of older predictor formats (older feature sets) come from runs of "
            "older checkouts on these same measurements.",
            "",
            "| batch | train | model | test | MAPE % | within ±10% | Kendall τ |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            *notes,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subnets", type=int, default=300, help="random subnets measured per preset")
    parser.add_argument("--repeats", type=int, default=50, help="subnets measured a second time (noise floor)")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--runs", type=int, default=MeasureSettings().runs, help="timed runs per measurement")
    parser.add_argument("--resolutions", help="comma-separated subset of each preset's resolutions (quick checks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_latency")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--batch", action="store_true", help=f"instead: the learned predictor at batch 1 vs 32 on {BATCH_PRESET}"
    )
    parser.add_argument(
        "--remote", action="store_true",
        help=f"instead: {BATCH_PRESET}'s models built by two local agents of a remote target (--subnets end to end)",
    )  # fmt: skip
    parser.add_argument("--further", type=int, default=100, help="with --remote: subnets the models are tested on")
    args = parser.parse_args()
    if args.subnets < 10:
        parser.error("--subnets must be >= 10")
    settings = MeasureSettings(runs=args.runs)
    if args.remote:
        from bench.latency_remote import bench_remote

        body = bench_remote(BATCH_PRESET, args.subnets, args.further, args.seed, {"runs": args.runs})
        print(body)
        if not args.no_record:
            record("bench.latency", body, part="remote")
        return
    if args.batch:
        body = bench_batch(args.subnets, min(args.repeats, args.subnets), Path(args.out), settings, args.seed)
        if not args.no_record:
            record("bench.latency", body, part="batch")
        return
    resolutions = None if args.resolutions is None else [int(r) for r in args.resolutions.split(",")]
    rows: list[str] = []
    costs: list[str] = []
    for name in args.presets.split(","):
        *preset_rows, cost = bench_preset(
            name, args.subnets, min(args.repeats, args.subnets), Path(args.out), settings, args.seed, resolutions
        )
        rows += preset_rows
        costs.append(cost)
    body = "\n".join(
        [
            f"Target `{TARGET}` (ONNX Runtime CPU, 1 thread, batch 1), {settings.runs} timed runs per measurement "
            "(median). Models are tested on the subnets after the first `train`.",
            "",
            "| preset | train | model | test | MAPE % | within ±10% | Kendall τ |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            *costs,
        ]
    )
    if not args.no_record:
        record("bench.latency", body)


if __name__ == "__main__":
    main()
