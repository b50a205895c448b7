"""Latency models on `cpu-ort`: lookup-table sum, learned predictor and a MACs baseline vs measurements.

    python -m bench.latency                              # both presets, 300 subnets each (run on an idle machine)
    python -m bench.latency --subnets 12 --no-record     # a quick check that it works
    python -m bench.latency --presets ofa_mbv3_d234_e346_k357_w1.0 --subnets 12 --resolutions 128,224 --no-record

Per preset (the 32 px one and ``ofa_mbv3_d234_e346_k357_w1.0`` over all its resolutions):
measures N random subnets end to end (ONNX Runtime, fresh weights), builds the per-layer table,
fits the learned predictor on the first 100 and the first 200 subnets (with and without the
table as a feature) and a MACs-proportional baseline (one scale fitted on the same subnets),
and reports MAPE, % within ±10% and Kendall τ on the remaining subnets. The noise floor is the
agreement of two measurement passes over the same subnets; the cost is seconds per subnet
(export + measurement) and per table. Everything measured is cached in --out as JSON, so a
rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from bench.report import record
from nas.cost import macs
from nas.space import Arch, SearchSpace
from nas.spaces import get_space
from predictors.latency import LearnedLatencyPredictor, LookupTable, MeasureSettings, get_target, measure_onnx
from predictors.latency.learned import LatencyMetrics, latency_metrics
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
        ratio = macs_m[train] / y[train]
        scale = float(ratio.sum() / (ratio**2).sum())  # least relative error of y ~ scale * MACs
        lines.append(row(name, size, "MACs x fitted scale", latency_metrics(scale * macs_m[test], y[test])))
        lines.append(row(name, size, "table sum", latency_metrics(table_ms[test], y[test])))
        for label, tab in (("learned", None), ("learned + table", table)):
            lat = LearnedLatencyPredictor(space, tab).fit(archs[train], y[train])
            lines.append(row(name, size, label, lat.evaluate(archs[test], y[test])))
    for line in lines:
        console.print(line)

    first = np.array([r["measurement"]["median_ms"] for r in records[:repeats]])
    again = np.array([r["measurement"]["median_ms"] for r in second])
    rel = np.abs(again - first) / first
    noisy = sum(r["measurement"]["noisy"] for r in records)
    per_subnet = statistics.median(r["seconds"] for r in records)
    cost = (
        f"- {name}: noise floor over {len(rel)} subnets measured twice: median |rel. diff| "
        f"{100 * np.median(rel):.2f}%, {100 * (rel <= 0.10).mean():.1f}% within ±10%; "
        f"{noisy}/{n} measurements flagged noisy; latency {y.min():.2f}-{y.max():.2f} ms; "
        f"cost {per_subnet:.2f} s per subnet (export + measure), table {len(table)} entries "
        f"({len(table.resolutions)} resolutions) in {table_s:.0f} s"
    )
    console.print(cost)
    return [*lines, cost]


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
    args = parser.parse_args()
    if args.subnets < 10:
        parser.error("--subnets must be >= 10")
    settings = MeasureSettings(runs=args.runs)
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
