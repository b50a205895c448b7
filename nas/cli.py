"""The ``hwnas`` command line.

Commands built so far: ``spaces``, ``export``, ``train`` and ``quickstart``. User errors end
with exit code 1 and one readable line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

QUICKSTART_SPACE = "ofa_mbv3_d234_e346_k357_32px"


class CLIError(Exception):
    """An error the user can fix; printed as one line, exit code 1."""


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _read_arch(text: str, space: Any) -> Any:
    if text in ("min", "max"):
        return space.min_arch() if text == "min" else space.max_arch()
    source = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise CLIError(f"--arch is not valid JSON ({exc.msg}); pass min, max, a JSON object or @file.json") from None


def cmd_spaces(args: argparse.Namespace) -> None:
    """List the registered search-space presets."""
    from rich.table import Table

    from nas.cost import macs, params
    from nas.spaces import get_space, list_spaces

    table = Table(title="search-space presets")
    for column in ("name", "subnets", "px", "MMACs", "params (M)"):
        table.add_column(column, no_wrap=True)
    for name in list_spaces():
        s = get_space(name)
        lo, hi = s.min_arch(), s.max_arch()
        table.add_row(
            name,
            f"10^{math.log10(s.size):.1f}",
            f"{s.resolutions[0]}-{s.resolutions[-1]}",
            f"{macs(s, lo) / 1e6:.0f}-{macs(s, hi) / 1e6:.0f}",
            f"{params(s, lo) / 1e6:.1f}-{params(s, hi) / 1e6:.1f}",
        )
    console.print(table)


def cmd_export(args: argparse.Namespace) -> None:
    """Export one subnet of a supernet (optionally loaded from an OFA checkpoint) as a bundle."""
    from nas.export import export_bundle
    from nas.supernet import build_supernet, read_state_dict

    net = build_supernet(args.space, num_classes=args.num_classes, in_channels=args.in_channels)
    arch = net.space.canonical(_read_arch(args.arch, net.space))
    if args.checkpoint:
        net.load_state_dict(read_state_dict(args.checkpoint))
    else:
        err_console.print("[yellow]warning:[/] no --checkpoint given: exporting randomly initialised weights")
    out = export_bundle(net, arch, args.out, mean=args.mean, std=args.std, archive=args.zip)
    meta = json.loads((out / "arch.json").read_text()) if out.is_dir() else None
    console.print(f"wrote {out}" + (f" ({meta['macs'] / 1e6:.1f} MMACs, {meta['params']:,} params)" if meta else ""))


class TrainingProgress:
    """A rich progress bar fed by `nas.train.ProgressEvent`s (one task per phase)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  {task.fields[ips]:,.0f} img/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> TrainingProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, event: Any) -> None:
        """Advance the bar of the event's phase."""
        if event.phase not in self.tasks:
            label = f"{event.phase} ({event.phase_index + 1}/{event.phases})"
            self.tasks[event.phase] = self.bar.add_task(label, total=event.epochs * event.steps, loss=0.0, ips=0.0)
        self.bar.update(
            self.tasks[event.phase],
            completed=event.epoch * event.steps + event.step + 1,
            loss=event.loss,
            ips=event.images_per_s,
        )


def _train(config: Any, out: Path, workers: int) -> Any:
    from nas.train import train_supernet

    with TrainingProgress() as progress:
        if workers > 1:
            from workers.train import train_supernet_on_ray

            return train_supernet_on_ray(config, out, num_workers=workers, progress=progress)
        return train_supernet(config, out, progress=progress)


def cmd_train(args: argparse.Namespace) -> None:
    """Train a supernet (resuming from the checkpoint in --out if there is one)."""
    from nas.train import TrainConfig

    config = TrainConfig(
        space=args.space,
        dataset=args.dataset,
        data_dir=args.data_dir,
        strategy=args.strategy,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
    )
    run = _train(config, Path(args.out), args.workers)
    last = run.history[-1]
    console.print(f"trained {len(run.history)} epochs; last loss {last['loss']:.3f}; checkpoint in {run.out_dir}")


def cmd_quickstart(args: argparse.Namespace) -> None:
    """Train a small supernet on the bundled demo set, evaluate sampled subnets, print the front, export the best."""
    import numpy as np
    from rich.table import Table

    from nas.cost import macs
    from nas.export import export_bundle
    from nas.search.pareto import pareto_mask
    from nas.train import TrainConfig, evaluate

    out = Path(args.out)
    config = TrainConfig(dataset="demo", epochs=args.epochs, batch_size=32, seed=args.seed)
    console.print(
        f"[bold]training[/] {config.space} on the bundled demo set (scikit-learn digits), {args.epochs} epochs"
    )
    run = _train(config, out / "supernet", 1)
    net, space = run.supernet, run.supernet.space
    archs = [space.min_arch(), space.max_arch(), *space.sample(args.seed, args.samples)]
    cost = np.asarray(macs(space, archs)) / 1e6
    with console.status("evaluating subnets (BN recalibration + validation split)"):
        top1 = np.array([evaluate(net, arch, "val").top1 for arch in archs])
    front = np.flatnonzero(pareto_mask(np.stack([top1, cost], axis=1), ["max", "min"]))
    front = front[np.argsort(cost[front])]
    table = Table(title=f"Pareto front of {len(archs)} evaluated subnets (validation top-1 vs MMACs)")
    for column in ("key", "px", "depths", "MMACs", "val top-1"):
        table.add_column(column)
    for i in front:
        a = archs[i]
        table.add_row(space.key(a), str(a["r"]), str(a["d"]), f"{cost[i]:.2f}", f"{top1[i]:.3f}")
    console.print(table)
    best = int(front[np.argmax(top1[front])])
    test = evaluate(net, archs[best], "test").top1
    path = export_bundle(
        net, archs[best], out / "best_subnet", mean=net.metadata["mean"], std=net.metadata["std"],
        class_names=net.metadata["classes"],
    )  # fmt: skip
    console.print(f"best subnet: val top-1 {top1[best]:.3f}, test top-1 {test:.3f}, {cost[best]:.2f} MMACs -> {path}")
    console.print(
        "[yellow]not built yet:[/] latency models (issue 5) and search (issue 6): MACs stand in for latency and "
        "random sampling for search."
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hwnas``."""
    parser = argparse.ArgumentParser(prog="hwnas", description="Hardware-aware NAS over once-for-all supernets.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("spaces", help="list search-space presets").set_defaults(func=cmd_spaces)

    export = sub.add_parser("export", help="export a subnet as an ONNX + safetensors bundle")
    export.add_argument("--space", required=True, help="preset name (see `hwnas spaces`)")
    export.add_argument("--arch", required=True, help="min, max, a JSON arch, or @file.json")
    export.add_argument("--checkpoint", help="OFA checkpoint (.pth/.pt via the weights-only loader, or .safetensors)")
    export.add_argument("--out", required=True, help="bundle directory (or .zip with --zip)")
    export.add_argument("--zip", action="store_true", help="write a zip archive")
    export.add_argument("--num-classes", type=int, help="classifier outputs (default: the preset's)")
    export.add_argument("--in-channels", type=int, help="input channels (default: the preset's)")
    export.add_argument("--mean", type=_floats, help="per-channel input mean, e.g. 0.485,0.456,0.406")
    export.add_argument("--std", type=_floats, help="per-channel input std, e.g. 0.229,0.224,0.225")
    export.set_defaults(func=cmd_export)

    train = sub.add_parser("train", help="train a supernet (resumes from the checkpoint in --out)")
    train.add_argument("--space", default="ofa_mbv3_d234_e346_k357_32px", help="preset name")
    train.add_argument("--dataset", default="demo", help="demo, fashion_mnist, mnist, cifar10, imagefolder or npz")
    train.add_argument("--data-dir", help="where the dataset is (directory, or the .npz file)")
    train.add_argument("--strategy", default="sandwich", help="sandwich or progressive_shrinking")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, help="default: the preset's")
    train.add_argument("--lr", type=float, help="peak learning rate; default: the preset's")
    train.add_argument("--workers", type=int, default=1, help="Ray Train workers (1 = in this process)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, help="run directory (checkpoints)")
    train.set_defaults(func=cmd_train)

    quick = sub.add_parser("quickstart", help="train on the demo set, evaluate subnets, export the best")
    quick.add_argument("--out", default="hwnas-out", help="output directory (default: hwnas-out)")
    quick.add_argument("--epochs", type=int, default=6, help="training epochs")
    quick.add_argument("--samples", type=int, default=30, help="random subnets to evaluate")
    quick.add_argument("--seed", type=int, default=0)
    quick.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hwnas`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CLIError, ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err_console.print(f"[red]error:[/] {message}", highlight=False)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
