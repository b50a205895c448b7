"""Training speed: images/s of sandwich steps, and the FLOP rate they reach against the CPU's FP32 peak.

    python -m bench.train_speed                            # this tree, the ISA torch picks here
    python -m bench.train_speed --isa avx2                 # as on an AVX2-only host (AVX-512 kernels off)
    python -m bench.train_speed --isa avx2 --baseline REV  # and the same runs at git revision REV, for the ratio
    python -m bench.train_speed --isa avx2 --profile 3     # where the time of 3 steps goes (torch profiler)

Trains the 32 px supernet on Fashion-MNIST with the sandwich rule (largest, smallest and two random
subnets per step, batch 128, 2 threads) for `--images` images and reports the epoch's images/s.
Each measurement runs in a fresh process (`--isa` must be set before torch loads); the baseline
runs this file against a git worktree of REV, so both sides compute the same steps; the two trees
take turns (`--repeat` times each) and the medians are compared.
`--profile N` prints instead the ops of N sandwich steps (after one warm-up step) by self CPU time,
grouped by input shape. FLOP/s counts 3x the forward MACs (forward, input and weight gradients) x 2
FLOPs, averaged over the step's subnets and the preset's resolutions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ISA_ENV = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "native": {},
}
FLOP_PER_CYCLE = {"AVX2": 32, "AVX512": 64, "DEFAULT": 8}
"""FP32 FLOPs per cycle and core, assuming two fused multiply-add units of the ISA's width."""


def measure(images: int) -> dict[str, Any]:
    """One sandwich epoch of `images` images in this process; its images/s and FLOPs per image."""
    import numpy as np
    import torch

    from nas.cost import macs
    from nas.spaces import get_space
    from nas.train import TrainConfig, train_supernet

    config = TrainConfig(dataset="fashion_mnist", epochs=1, train_images=images, epoch_validation=False)
    space = get_space(config.space)
    rng = np.random.default_rng(0)
    per_step = [
        sum(macs(space, {**arch, "r": r}) for arch in (space.max_arch(), space.min_arch(), *space.sample(rng, 2)))
        for r in space.resolutions
        for _ in range(50)
    ]
    with tempfile.TemporaryDirectory() as out:
        run = train_supernet(config, out)
    return {
        "images_per_s": run.history[0]["images_per_s"],
        "flop_per_image": 3 * 2 * float(np.mean(per_step)),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def profile(steps: int, rows: int = 25) -> str:
    """The torch profiler's table of `steps` sandwich steps after a warm-up step: ops by self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity, schedule

    from nas.train import TrainConfig, train_supernet

    config = TrainConfig(dataset="fashion_mnist", epochs=1, train_images=128 * (steps + 1), epoch_validation=False)
    tables: list[str] = []

    def keep_table(profiler: torch.profiler.profile) -> None:
        averages = profiler.key_averages(group_by_input_shape=True)
        tables.append(averages.table(sort_by="self_cpu_time_total", row_limit=rows))

    with (
        torch.profiler.profile(
            activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=1, active=steps, repeat=1),
            record_shapes=True, on_trace_ready=keep_table,
        ) as profiler,
        tempfile.TemporaryDirectory() as out,
    ):  # fmt: skip
        train_supernet(config, out, progress=lambda _: profiler.step())
    isa, threads = torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()
    return f"{steps} steps after a warm-up step, ISA {isa}, {threads} threads\n" + "\n".join(tables)


def _measure_in(tree: Path, isa: str, images: int) -> dict[str, Any]:
    env = {**os.environ, **ISA_ENV[isa], "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(images)],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median images/s, with every run's images/s listed under ``all``."""
    ordered = sorted(runs, key=lambda r: r["images_per_s"])
    return ordered[len(ordered) // 2] | {"all": [r["images_per_s"] for r in runs]}


def peak_gflops(isa: str, cores: int) -> tuple[float, float]:
    """(clock GHz, FP32 peak GFLOP/s of `cores` cores) from /proc/cpuinfo's current clock."""
    found = re.search(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
    ghz = float(found.group(1)) / 1000 if found else float("nan")
    return ghz, ghz * FLOP_PER_CYCLE.get(isa, FLOP_PER_CYCLE["DEFAULT"]) * cores


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=3840, help="images in the measured epoch (30 steps of 128)")
    parser.add_argument("--isa", choices=sorted(ISA_ENV), default="native")
    parser.add_argument("--baseline", metavar="REV", help="also measure git revision REV (a worktree of it)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each tree (the median is reported)")
    parser.add_argument("--profile", type=int, metavar="STEPS", help="print where the time of STEPS steps goes")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.profile is not None:
        os.environ.update(ISA_ENV[args.isa])  # before torch loads
        print(profile(args.profile))
        return
    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return

    from bench.report import record

    trees = {"this tree": ROOT}
    baseline = Path(tempfile.mkdtemp()) / "baseline"
    if args.baseline:
        trees[f"baseline {args.baseline}"] = baseline
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", str(baseline), args.baseline], check=True, capture_output=True)
    try:
        # the trees take turns, so a change in the machine's speed affects both alike
        samples = [{name: _measure_in(tree, args.isa, args.images) for name, tree in trees.items()}
                   for _ in range(args.repeat)]  # fmt: skip
    finally:
        if args.baseline:
            subprocess.run([*git, "remove", "--force", str(baseline)], check=True)
    runs = {name: median_run([s[name] for s in samples]) for name in trees}
    ours = runs["this tree"]
    ghz, peak = peak_gflops(ours["isa"], ours["threads"])
    rows = [
        "| code | ISA | images/s (median) | every run | GFLOP/s | share of FP32 peak |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        gflops = r["images_per_s"] * r["flop_per_image"] / 1e9
        every = ", ".join(f"{v:.1f}" for v in r["all"])
        rows.append(f"| {name} | {r['isa']} | {r['images_per_s']:.1f} | {every} | {gflops:.1f} | {gflops / peak:.1%} |")
    lines = [
        f"Sandwich epoch of {args.images:,} Fashion-MNIST images (batch 128, 32 px preset), {ours['threads']} threads, "
        f"ISA `{args.isa}`; {ours['flop_per_image'] / 1e6:.0f} MFLOP per image per step; FP32 peak {peak:.0f} GFLOP/s "
        f"({ours['threads']} cores x {FLOP_PER_CYCLE.get(ours['isa'], 8)} FLOP/cycle x {ghz:.2f} GHz).",
        "",
        *rows,
    ]
    if len(runs) == 2:
        base = runs[f"baseline {args.baseline}"]["images_per_s"]
        lines += ["", f"Speed-up: **{ours['images_per_s'] / base:.2f}x** images/s (bar: 2x)."]
    print("\n".join(lines))
    if not args.no_record:
        record("bench.train_speed", "\n".join(lines), part=args.isa)


if __name__ == "__main__":
    main()
