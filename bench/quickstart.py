"""README command 1 as a newcomer runs it: ``hwnas quickstart``, timed, and the front it shows judged.

Runs the command once per seed, one after another, each in a fresh output folder (the install is
excluded), then reads ``front.json`` and re-scores the written ``best_subnet`` bundle
independently (ONNX Runtime on the demo test split, as `nas.bundle_eval` does for every front
member) and checks issue 20's bars:

- the whole command in <= 10 min on a 2-core host (the ISA is named; ``--avx2`` makes torch and
  oneDNN dispatch to AVX2 kernels on an AVX-512 host, to approximate an AVX2 machine);
- the most accurate subnet >= 0.97 validated top-1;
- validated accuracy rises with measured latency along the front (Spearman rho >= 0.6);
- mean |predicted - validated accuracy| <= 0.01.

    python -m bench.quickstart [--avx2] [--seeds 0 1 2] [--out runs/bench_quickstart]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import record

BARS = {"seconds": 600.0, "best_accuracy": 0.97, "spearman_rho": 0.6, "mean_abs_error": 0.01}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_quickstart"))
    parser.add_argument("--avx2", action="store_true", help="dispatch torch/oneDNN kernels to AVX2 (emulate a host)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="quickstart seeds, one run each")
    parser.add_argument("--no-record", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.avx2:
        env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    runs = [_run(args.out / f"seed{seed}", seed, env) for seed in args.seeds]
    met = {bar: all(run["met"][bar] for run in runs) for bar in BARS}
    forced = " (forced with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)" if args.avx2 else ""
    lines = [
        f"- kernels: {_isa(env)}{forced}",
        f"- seeds {', '.join(map(str, args.seeds))}: one `hwnas quickstart --seed S` each, run one after another",
        "",
        "| seed | whole command | best validated top-1 | Spearman rho (members) | mean abs(pred - valid) "
        "| predictor tau (held out) | latency drift (reference subnet) | phases |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {run['seed']} | {run['seconds'] / 60:.1f} min | {run['best_accuracy']:.4f} "
            f"| {_fmt(run['spearman_rho'])} ({run['n']}) | {_fmt(run['mean_abs_error'], 4)} | {_fmt(run['tau'])} "
            f"| {run['drift']} | {run['phases']} |"
            for run in runs
        ),
        "",
        "| bar | met on every seed |",
        "|---|---|",
        f"| whole command <= 10 min | {_yes(met['seconds'])} |",
        f"| most accurate front member >= 0.97 validated top-1 on its bundle | {_yes(met['best_accuracy'])} |",
        f"| Spearman rho of validated accuracy vs measured latency >= 0.6 | {_yes(met['spearman_rho'])} |",
        f"| mean abs(predicted - validated accuracy) <= 0.01 | {_yes(met['mean_abs_error'])} |",
        "",
        *runs[0]["detail"],
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_record:
        record("bench.quickstart", body, part="avx2-emulated" if args.avx2 else None)


def _run(out: Path, seed: int, env: dict[str, str]) -> dict[str, Any]:
    """One timed quickstart in a fresh folder: its figures, which bars they meet, and its front as table lines."""
    shutil.rmtree(out, ignore_errors=True)
    hwnas = Path(sys.executable).parent / "hwnas"
    command = [str(hwnas), "quickstart", "--out", str(out), "--seed", str(seed)]
    start = time.monotonic()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    out.mkdir(parents=True, exist_ok=True)
    (out / "quickstart.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        sys.exit(f"hwnas quickstart failed ({completed.returncode}); see {out / 'quickstart.log'}")

    doc = json.loads((out / "front.json").read_text())
    agreement = doc["agreement"]
    best = max(doc["front"], key=lambda p: p["validated"]["accuracy"])
    rescored = _rescore(out / "best_subnet")
    held_out = (doc["predictor"] or {}).get("held_out") or {}
    met = {
        "seconds": seconds <= BARS["seconds"],
        "best_accuracy": (agreement["best_accuracy"] or 0) >= BARS["best_accuracy"],
        "spearman_rho": (agreement["spearman_rho"] or -1) >= BARS["spearman_rho"],
        "mean_abs_error": (agreement["mean_abs_error"] or 1) <= BARS["mean_abs_error"],
    }
    detail = [
        f"Seed {seed} in detail:",
        "",
        f"- best subnet {best['arch_key']}: shown {best['validated']['accuracy']:.4f}, its written bundle re-scored "
        f"{rescored:.4f} (ONNX Runtime, demo test split)",
        f"- accuracy predictor on held-out subnets: {json.dumps(held_out)}",
        f"- latency table vs end to end: {json.dumps(doc['table_quality'])}",
        "",
        "| latency (ms, measured) | accuracy (validated) | predicted accuracy | px |",
        "|---|---|---|---|",
        *(
            f"| {p['validated']['latency:cpu-ort']:.3f} | {p['validated']['accuracy']:.4f} "
            f"| {p['predicted']['accuracy']:.4f} | {p['arch']['r']} |"
            for p in sorted(doc["front"], key=lambda p: p["validated"]["latency:cpu-ort"])
        ),
    ]
    return {
        "seed": seed, "seconds": seconds, "n": agreement["n"], "best_accuracy": agreement["best_accuracy"],
        "spearman_rho": agreement["spearman_rho"], "mean_abs_error": agreement["mean_abs_error"],
        "tau": held_out.get("kendall_tau"), "met": met, "detail": detail, "drift": _drift(doc.get("drift") or {}),
        "phases": ", ".join(f"{k} {v:.0f} s" for k, v in doc["phases"].items() if not k.startswith("search: ")),
    }  # fmt: skip


def _rescore(bundle: Path) -> float:
    from nas.bundle_eval import score_bundle
    from nas.data import load_dataset

    data = load_dataset("demo")
    return score_bundle(bundle, data.test_images, data.test_labels).top1


def _drift(drift: dict[str, Any]) -> str:
    """How the reference subnet's latency moved while the front was measured, per target."""
    parts = []
    for target, d in drift.items():
        moves = f"{100 * d['first_relative_change']:+.0f}%"
        if d["remeasured"]:
            moves += f", again {100 * d['relative_change']:+.0f}%" + (" (flagged)" if d["flagged"] else "")
        parts.append(f"{target} {moves}")
    return "; ".join(parts) or "n/a"


def _isa(env: dict[str, str]) -> str:
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


if __name__ == "__main__":
    main()
