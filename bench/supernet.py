"""Supernet benchmark: forward time (dynamic vs extracted), encode throughput, ONNX export time,
and one epoch of sandwich-rule training of the 32 px preset on Fashion-MNIST.

    python -m bench.supernet                   # everything, full epoch (about 5 minutes)
    python -m bench.supernet --epoch-steps 60  # epoch time extrapolated from 60 steps
    python -m bench.supernet --no-record       # print only, leave BENCHMARKS.md alone

The training step here is a faithful stand-in for the sandwich rule (largest + smallest + 2
random subnets per batch, in-place distillation from the largest, elastic resolution per batch,
SGD with momentum, channels-last tensors) used to size the preset; the real training loop is
`nas.train` (issue 4).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from bench.report import record
from nas.data import read_idx
from nas.export import export_onnx
from nas.space import Arch
from nas.spaces import get_space
from nas.supernet import build_supernet

console = Console()
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
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


def bench_epoch(steps: int | None, batch_size: int = 128, n_random: int = 2) -> str:
    images = read_idx(FASHION_MNIST / "train-images-idx3-ubyte.gz")
    labels = torch.from_numpy(read_idx(FASHION_MNIST / "train-labels-idx1-ubyte.gz").astype(np.int64))
    x_all = torch.from_numpy(images).float().div_(255).sub_(0.2860).div_(0.3530).unsqueeze(1)
    space = get_space(SMALL)
    torch.manual_seed(0)
    net = build_supernet(space).to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(0)
    order = torch.from_numpy(rng.permutation(len(x_all)))
    total_steps = len(x_all) // batch_size
    run_steps = total_steps if steps is None else min(steps, total_steps)
    progress = Progress(
        TextColumn("sandwich epoch"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
    )
    start = time.perf_counter()
    with progress:
        task = progress.add_task("epoch", total=run_steps)
        for step in range(run_steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            resolution = int(rng.choice(space.resolutions))
            x = F.pad(x_all[idx], (2, 2, 2, 2))  # padded random crop back to 28, then resize
            dx, dy = rng.integers(0, 5, 2)
            x = x[:, :, dy : dy + 28, dx : dx + 28]
            if resolution != 28:
                x = F.interpolate(x, size=resolution, mode="bilinear", align_corners=False)
            x = x.contiguous(memory_format=torch.channels_last)
            y = labels[idx]
            opt.zero_grad(set_to_none=True)
            soft: torch.Tensor | None = None
            randoms: list[Arch] = [{**a, "r": resolution} for a in space.sample(rng, n_random)]
            for arch in [space.max_arch(resolution), space.min_arch(resolution), *randoms]:
                net.set_active(arch)
                logits = net(x)
                if soft is None:
                    loss = F.cross_entropy(logits, y, label_smoothing=0.1)
                    soft = logits.detach().softmax(1)
                else:
                    loss = -(soft * logits.log_softmax(1)).sum(1).mean()
                loss.backward()
            opt.step()
            progress.advance(task)
    elapsed = time.perf_counter() - start
    epoch = elapsed * total_steps / run_steps
    how = "a full epoch" if run_steps == total_steps else f"{run_steps} of {total_steps} steps, extrapolated"
    line = (
        f"- one sandwich-rule epoch of {SMALL} on Fashion-MNIST (60,000 images, batch {batch_size}, "
        f"largest + smallest + {n_random} random subnets, resolution per batch from {list(space.resolutions)}): "
        f"**{epoch:.0f} s** ({how}; {60000 * (2 + n_random) / epoch:,.0f} subnet-images/s)"
    )
    console.print(line)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--epoch-steps", type=int, help="time this many training steps and extrapolate")
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args()
    sections = [
        "### Forward time, CPU (median, eval mode, no grad)\n\n" + bench_forward(),
        "### Other figures\n\n" + "\n".join([bench_encode(), bench_export(), bench_epoch(args.epoch_steps)]),
    ]
    if not args.no_record:
        record("bench.supernet", "\n\n".join(sections))


if __name__ == "__main__":
    main()
