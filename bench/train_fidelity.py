"""Supernet fidelity: subnets taken from a trained supernet vs the same archs trained alone.

    python -m bench.train_fidelity                       # Fashion-MNIST, 6 epochs, all 54,000 training images
    python -m bench.train_fidelity --train-images 20000  # a quicker, smaller run (the report says so)

Trains the 32 px supernet with `sandwich` and with `progressive_shrinking`, and 5 subnets
(smallest, largest, 3 random; fixed seed) alone from scratch with the same epochs and recipe.
Reports test top-1 of each subnet from each supernet (after BN recalibration) next to its
standalone top-1, the mean gap, seconds per epoch and images/s. Every run checkpoints into
--out, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from rich.console import Console

from bench.report import record
from cli.progress import TrainingProgress
from nas.space import Arch
from nas.spaces import get_space
from nas.train import TrainConfig, TrainRun, evaluate, train_supernet

console = Console()
STRATEGIES = ("sandwich", "progressive_shrinking")


def run(config: TrainConfig, out: Path, device: str) -> TrainRun:
    console.print(f"[bold]{config.strategy}[/] -> {out} on {device}")
    with TrainingProgress() as progress:
        return train_supernet(config, out, progress=progress, device=device)


def epoch_figures(r: TrainRun) -> str:
    seconds = statistics.mean(h["seconds"] for h in r.history)
    ips = statistics.mean(h["images_per_s"] for h in r.history)
    return f"{seconds:.0f} s/epoch, {ips:,.0f} images/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-images", type=int, help="train on this many images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_fidelity")
    parser.add_argument("--device", default="cpu", help="train on this device (cpu, cuda); evaluation runs on the CPU")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    common = {"dataset": args.dataset, "epochs": args.epochs, "seed": args.seed, "train_images": args.train_images}

    supernets = {s: run(TrainConfig(strategy=s, **common), out / s, args.device) for s in STRATEGIES}
    space = supernets["sandwich"].supernet.space
    resolution = max(space.resolutions)
    archs: list[Arch] = [space.min_arch(resolution), space.max_arch(resolution)]
    archs += [{**a, "r": resolution} for a in get_space(space.name).sample(args.seed, 3)]
    labels = ["smallest", "largest", "random 1", "random 2", "random 3"]

    rows = ["| subnet | standalone | " + " | ".join(STRATEGIES) + " |", "|---|---|" + "---|" * len(STRATEGIES)]
    gaps: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    standalone_runs = []
    for label, arch in zip(labels, archs, strict=True):
        alone = run(
            TrainConfig(strategy="standalone", arch=dict(arch), **common),
            out / f"standalone_{space.key(arch)}",
            args.device,
        )
        standalone_runs.append(alone)
        base = evaluate(alone.supernet, arch, "test", recalibrate=False).top1
        cells = []
        for s in STRATEGIES:
            top1 = evaluate(supernets[s].supernet, arch, "test").top1
            gaps[s].append(100 * (top1 - base))
            cells.append(f"{100 * top1:.2f} ({100 * (top1 - base):+.2f})")
        rows.append(f"| {label} `{space.key(arch)}` | {100 * base:.2f} | " + " | ".join(cells) + " |")
        console.print(rows[-1])

    n_images = f"{args.train_images:,}" if args.train_images else "all"
    trained_on = "the CPU" if args.device == "cpu" else f"{args.device} ({torch.cuda.get_device_name(args.device)})"
    lines = [
        f"Dataset {args.dataset}, {n_images} training images (10% of the train split held out for validation), "
        f"{args.epochs} epochs per run, trained on {trained_on}, resolution {resolution} for evaluation; "
        "top-1 on the test split in %, "
        "supernet subnets after BN recalibration (gap to standalone in brackets).",
        "",
        *rows,
        "",
        *(
            f"- {s}: mean gap **{statistics.mean(gaps[s]):+.2f}** points; {epoch_figures(supernets[s])}"
            for s in STRATEGIES
        ),
        f"- standalone training: {epoch_figures(standalone_runs[1])} (largest subnet)",
        "- largest subnet top-1: "
        + ", ".join(f"{s} {100 * evaluate(supernets[s].supernet, archs[1], 'test').top1:.2f}%" for s in STRATEGIES),
    ]
    console.print("\n".join(lines))
    if not args.no_record:
        record("bench.train_fidelity", "\n".join(lines))


if __name__ == "__main__":
    main()
