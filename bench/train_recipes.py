"""Recipe study: the supernet's subnets after sandwich training with each recipe variant, side by side.

    python -m bench.train_recipes --train-images 10000 --epochs 6 \
        --variant base --variant top:largest_at_top_resolution=true --variant labels:distilled_label_weight=1

Each `--variant NAME[:KEY=VALUE,...]` trains the 32 px supernet on the same Fashion-MNIST image budget
with those `TrainConfig` fields changed (the first variant is the reference) and reports the test
top-1 of the three subnets `bench.train_fidelity` compares with standalone training (smallest, median
MACs, largest, at the largest resolution, BN-recalibrated), their mean and its difference to the
reference. Cheaper than `bench.train_fidelity` (no standalone runs, no fine-tunes), so it is the way to
choose a recipe before the fidelity benchmark measures it. Runs checkpoint under --out, named by
their configuration: an interrupted study resumes, and a variant that was already trained is only
evaluated.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.report import record
from bench.train_fidelity import median_macs_arch, seconds, train
from cli.commands.science import parse_settings
from nas.spaces import get_space
from nas.train import TrainConfig, evaluate


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`NAME[:KEY=VALUE,KEY=VALUE]` -> (NAME, ["KEY=VALUE", ...])."""
    name, _, fields = text.partition(":")
    return name, [item for item in fields.split(",") if item]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-images", type=int, default=10000, help="the image budget of every run")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME[:KEY=VALUE,...]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_recipes")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    common = {"dataset": args.dataset, "epochs": args.epochs, "seed": args.seed, "train_images": args.train_images}

    rows = [
        "| variant | recipe | smallest | median MACs | largest | mean | vs reference | s per epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reference: float | None = None
    for text in args.variant:
        name, items = parse_variant(text)
        recipe = parse_settings(items, {})
        run = train(TrainConfig(strategy="sandwich", **common, **recipe), Path(args.out), "cpu")
        space = run.supernet.space
        resolution = max(space.resolutions)
        subnets = (
            space.min_arch(resolution),
            median_macs_arch(get_space(space.name), resolution, args.seed),
            space.max_arch(resolution),
        )
        top1 = [100 * evaluate(run.supernet, arch, "test").top1 for arch in subnets]
        mean = statistics.mean(top1)
        reference = mean if reference is None else reference
        described = ", ".join(f"{k}={v}" for k, v in recipe.items()) or "the defaults"
        rows.append(
            f"| {name} | {described} | "
            + " | ".join(f"{t:.2f}" for t in top1)
            + f" | {mean:.2f} | {mean - reference:+.2f} | {seconds(run) / len(run.history):.0f} |"
        )
        print(rows[-1], flush=True)
    lines = [
        f"Dataset {args.dataset}, {args.train_images:,} training images, {args.epochs} epochs, sandwich rule; test "
        "top-1 (%) of the subnets `bench.train_fidelity` compares, taken from the supernet after BN recalibration, "
        "at the largest resolution.",
        "",
        *rows,
    ]
    print("\n".join(lines))
    if not args.no_record:
        record("bench.train_recipes", "\n".join(lines))


if __name__ == "__main__":
    main()
