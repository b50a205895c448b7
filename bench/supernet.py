"""Supernet benchmark: forward time (dynamic vs extracted), encode throughput, ONNX export time,
and one epoch of sandwich-rule training of the 32 px preset on Fashion-MNIST.

    python -m bench.supernet                      # everything, one full training epoch (about 5 minutes)
    python -m bench.supernet --train-images 5000  # a shorter epoch
    python -m bench.supernet --no-record          # print only, leave BENCHMARKS.md alone

The epoch is one epoch of `nas.train.train_supernet` with the sandwich rule: the figure that
sizes the 32 px preset.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

from bench.report import record
from cli.progress import TrainingProgress
from nas.export import export_onnx
from nas.spaces import get_space
from nas.supernet import build_supernet
from nas.train import TrainConfig, train_supernet

console = Console()
SMALL = "ofa_mbv3_d234_e346_k357_32px"
W10 = "ofa_mbv3_d234_e346_k357_w1.0"


def median_ms(fn: Callable[[], object], min_runs: int = 5, min_seconds: float = 1.0, max_runs: int = 50) -> float:
    """Median wall time of `fn` in ms after 2 warm-up calls."""
    for _ in range(2):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench_forward() -> str:
    rows = [
        "| preset | subnet | batch | dynamic supernet ms | extracted subnet ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, resolution in ((W10, 224), (SMALL, 32)):
        torch.manual_seed(0)
        net = build_supernet(name).eval()
        for label, arch in (("min", net.space.min_arch(resolution)), ("max", net.space.max_arch(resolution))):
            net.set_active(arch)
            sub = net.extract(arch).eval()
            for batch in (1, 64):
                x = torch.randn(batch, net.backbone.in_channels, resolution, resolution)
                with torch.no_grad():
                    dyn = median_ms(lambda: net(x))  # noqa: B023 (called before the loop moves on)
                    sta = median_ms(lambda: sub(x))  # noqa: B023
                row = f"| {name} @{resolution} | {label} | {batch} | {dyn:.2f} | {sta:.2f} | {dyn / sta:.2f} |"
                console.print(row)
                rows.append(row)
    return "\n".join(rows)


def bench_encode(n: int = 100_000) -> str:
    space = get_space(W10)
    archs = space.sample(0, n)
    best = min(median_ms(lambda: space.encode(archs), min_runs=3, min_seconds=0.0) for _ in range(2))
    line = f"- `SearchSpace.encode` of {n:,} arch dicts ({W10}): {best:.0f} ms = **{n / best * 1000:,.0f} archs/s**"
    console.print(line)
    return line


def bench_export() -> str:
    torch.manual_seed(0)
    net = build_supernet(W10)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch in (("min", net.space.min_arch(224)), ("max", net.space.max_arch(224))):
            sub = net.extract(arch).eval()
            t = time.perf_counter()
            export_onnx(sub, Path(tmp) / f"{label}.onnx", (3, 224, 224))
            lines.append(
                f"- ONNX export + `onnx.checker` of the {label} {W10} subnet @224: {time.perf_counter() - t:.2f} s"
            )
            console.print(lines[-1])
    return "\n".join(lines)


def bench_epoch(train_images: int | None) -> str:
    config = TrainConfig(space=SMALL, dataset="fashion_mnist", strategy="sandwich", epochs=1, train_images=train_images)
    with tempfile.TemporaryDirectory() as tmp, TrainingProgress() as progress:
        run = train_supernet(config, tmp, progress=progress)
    epoch = run.history[0]
    seconds, images_per_s = epoch["seconds"], epoch["images_per_s"]
    images = round(seconds * images_per_s)
    line = (
        f"- one `train_supernet` sandwich epoch of {SMALL} on Fashion-MNIST ({images:,} training images, "
        f"batch {config.batch}, largest + smallest + {config.num_random} random subnets per step, resolution per "
        f"batch): **{seconds:.0f} s**, {images_per_s:,.0f} images/s, i.e. {60000 / images_per_s:.0f} s "
        "for 60,000 images"
    )
    console.print(line)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--train-images", type=int, help="time the epoch on this many images only")
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args()
    sections = [
        "### Forward time, CPU (median, eval mode, no grad)\n\n" + bench_forward(),
        "### Other figures\n\n" + "\n".join([bench_encode(), bench_export(), bench_epoch(args.train_images)]),
    ]
    if not args.no_record:
        record("bench.supernet", "\n\n".join(sections))


if __name__ == "__main__":
    main()
