"""Supernet fidelity: subnets of a sandwich supernet, as they are and fine-tuned, vs the same archs trained alone.

    python -m bench.train_fidelity --train-images 20000 --epochs 6
    python -m bench.train_fidelity --train-images 20000 --epochs 6 --recipe zero_init_residual_bn=true

Trains the 32 px supernet with the sandwich rule on a fixed budget of Fashion-MNIST images, and
three subnets at the largest resolution (smallest, median MACs of 1,001 sampled, largest) alone from
scratch with the same epochs, data and base recipe. Reports each subnet's test top-1: standalone; taken
from the supernet after BN recalibration; the same after a one-epoch fine-tune (`nas.train.finetune`,
distilled from the largest subnet). Also the mean gaps against the bars, the supernet's images/s,
and the whole cost (supernet + fine-tunes) against the three standalone trainings.
`--recipe KEY=VALUE` sets `TrainConfig` fields (the recipe study of issue 22): the sandwich-only ones
(`SANDWICH_OPTIONS`: largest_at_top_resolution, distilled_label_weight, largest_first_epochs) for the
supernet, every other (e.g. zero_init_residual_bn) for the standalone runs too, so both sides train
with the same recipe. Every run checkpoints under --out (named by its
configuration), so an interrupted benchmark resumes and recipe variants share their standalone runs.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from rich.console import Console

from bench.report import record
from cli.commands.science import parse_settings
from cli.progress import TrainingProgress
from nas.cost import macs
from nas.finetune_config import FinetuneConfig
from nas.space import Arch, SearchSpace
from nas.spaces import get_space
from nas.train import TrainConfig, TrainRun, evaluate, train_supernet
from nas.train.config import SANDWICH_OPTIONS
from nas.train.evaluate import data_for, score_subnet
from nas.train.finetune import finetune_subnet

console = Console()
BARS = {"no_finetune": -2.5, "finetuned": 0.0}
"""Mean gap to standalone (points of top-1) each column must reach (issue 22)."""


def config_hash(config: BaseModel) -> str:
    """A short hash of a configuration's JSON."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:10]


def run_dir(out: Path, config: TrainConfig) -> Path:
    """`out/<strategy>-<hash of the configuration>`: one directory per distinct run."""
    return out / f"{config.strategy}-{config_hash(config)}"


def train(config: TrainConfig, out: Path, device: str) -> TrainRun:
    """Train (or resume, or just load) the run of `config`."""
    path = run_dir(out, config)
    console.print(f"[bold]{config.strategy}[/] -> {path} on {device}")
    with TrainingProgress() as progress:
        return train_supernet(config, path, progress=progress, device=device)


def seconds(run: TrainRun) -> float:
    """Training seconds over all epochs (from the history, so a resumed run counts its earlier epochs)."""
    return float(sum(h["seconds"] for h in run.history))


def median_macs_arch(space: SearchSpace, resolution: int, seed: int) -> Arch:
    """The arch of median MACs among 1,001 sampled at `resolution`."""
    archs: list[Arch] = [{**a, "r": resolution} for a in space.sample(np.random.default_rng(seed), 1001)]
    order = np.argsort([macs(space, a) for a in archs])
    return archs[int(order[len(order) // 2])]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-images", type=int, default=20000, help="the image budget of every run")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-lr", type=float, default=FinetuneConfig().lr)
    parser.add_argument("--finetune-batch-size", type=int, help="default: the supernet's training batch")
    parser.add_argument(
        "--finetune-kd-ratio", type=float, default=FinetuneConfig().kd_ratio, help="0: fine-tune on the labels alone"
    )
    parser.add_argument("--recipe", nargs="*", default=[], metavar="KEY=VALUE", help="supernet TrainConfig fields")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_fidelity")
    parser.add_argument("--device", default="cpu", help="train on this device (cpu, cuda); evaluation runs on the CPU")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    recipe = parse_settings(args.recipe, {})
    shared = {k: v for k, v in recipe.items() if k not in SANDWICH_OPTIONS}
    common = {"dataset": args.dataset, "epochs": args.epochs, "seed": args.seed, "train_images": args.train_images}

    supernet_run = train(TrainConfig(strategy="sandwich", **common, **recipe), out, args.device)
    supernet = supernet_run.supernet
    space = supernet.space
    resolution = max(space.resolutions)
    subnets = {
        "smallest": space.min_arch(resolution),
        "median MACs": median_macs_arch(get_space(space.name), resolution, args.seed),
        "largest": space.max_arch(resolution),
    }
    data, splits = data_for(supernet)
    finetune = FinetuneConfig(
        epochs=args.finetune_epochs, lr=args.finetune_lr, kd_ratio=args.finetune_kd_ratio,
        batch_size=args.finetune_batch_size or supernet_run.config.batch,
        train_images=args.train_images, seed=args.seed,
    )  # fmt: skip

    rows = [
        "| subnet | MMACs | standalone | supernet (gap) | fine-tuned (gap) |",
        "|---|---|---|---|---|",
    ]
    gaps: dict[str, list[float]] = {"no_finetune": [], "finetuned": []}
    standalone_s, finetune_s = 0.0, 0.0
    for label, arch in subnets.items():
        alone = train(TrainConfig(strategy="standalone", arch=dict(arch), **common, **shared), out, args.device)
        standalone_s += seconds(alone)
        base = evaluate(alone.supernet, arch, "test", recalibrate=False).top1
        taken = evaluate(supernet, arch, "test").top1
        tuned_dir = run_dir(out, supernet_run.config) / f"finetune-{space.key(arch)}-{config_hash(finetune)}"
        tuned = finetune_subnet(supernet, arch, finetune, out_dir=tuned_dir)
        finetune_s += sum(h["seconds"] for h in tuned.history)
        tuned_top1 = score_subnet(tuned.subnet, data, splits["test"], resolution).top1
        gaps["no_finetune"].append(100 * (taken - base))
        gaps["finetuned"].append(100 * (tuned_top1 - base))
        cells = [f"{100 * top1:.2f} ({100 * (top1 - base):+.2f})" for top1 in (taken, tuned_top1)]
        rows.append(
            f"| {label} `{space.key(arch)}` | {macs(space, arch) / 1e6:.1f} | {100 * base:.2f} | "
            + " | ".join(cells)
            + " |"
        )
        console.print(rows[-1])

    trained_on = "the CPU" if args.device == "cpu" else f"{args.device} ({torch.cuda.get_device_name(args.device)})"
    speed = statistics.mean(h["images_per_s"] for h in supernet_run.history if h["phase"] == "sandwich")
    mean = {column: statistics.mean(values) for column, values in gaps.items()}
    verdict = {column: "met" if mean[column] >= bar else "not met" for column, bar in BARS.items()}
    lines = [
        f"Dataset {args.dataset}, {args.train_images:,} training images, {args.epochs} epochs per run (supernet "
        f"and standalone), fine-tune {args.finetune_epochs} epoch(s) at lr {args.finetune_lr}, batch "
        f"{finetune.batch_size}, on the labels and "
        f"(weight {args.finetune_kd_ratio}) the largest subnet's outputs; trained on {trained_on}; resolution "
        f"{resolution}; top-1 on the test split in %. "
        f"Supernet recipe: sandwich{''.join(f', {k}={v}' for k, v in recipe.items()) or ' (base)'}; standalone: "
        f"{', '.join(f'{k}={v}' for k, v in shared.items()) or 'the base recipe'}.",
        "",
        *rows,
        "",
        f"- mean gap without fine-tuning: **{mean['no_finetune']:+.2f}** points (bar >= {BARS['no_finetune']}: "
        f"{verdict['no_finetune']})",
        f"- mean gap after fine-tuning: **{mean['finetuned']:+.2f}** points (bar >= {BARS['finetuned']}: "
        f"{verdict['finetuned']})",
        f"- supernet: {seconds(supernet_run):.0f} s ({speed:,.0f} images/s in the sandwich epochs); fine-tunes "
        f"{finetune_s:.0f} s; whole cost {seconds(supernet_run) + finetune_s:.0f} s against {standalone_s:.0f} s "
        "for the three standalone trainings",
    ]
    console.print("\n".join(lines))
    if not args.no_record:
        changed = recipe | {
            name: value
            for name, value, default in (
                ("finetune_lr", args.finetune_lr, FinetuneConfig().lr),
                ("finetune_epochs", args.finetune_epochs, 1),
                ("finetune_kd_ratio", args.finetune_kd_ratio, FinetuneConfig().kd_ratio),
                ("finetune_batch_size", args.finetune_batch_size, None),
            )
            if value != default
        }
        variant = ",".join(f"{k}={v}" for k, v in changed.items()) or None
        record("bench.train_fidelity", "\n".join(lines), part=variant)


if __name__ == "__main__":
    main()
