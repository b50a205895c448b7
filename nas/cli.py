"""The ``hwnas`` command line.

Commands built so far: ``spaces``, ``export`` and ``quickstart``. User errors end with exit
code 1 and one readable line.
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


def cmd_quickstart(args: argparse.Namespace) -> None:
    """Build the small-input supernet, map its cost range and export its extreme subnets.

    Training, latency models and search are not built yet; the command says so.
    """
    import numpy as np
    from rich.progress import Progress
    from rich.table import Table

    from nas.cost import macs_matrix, params_matrix
    from nas.export import export_bundle
    from nas.supernet import build_supernet

    out = Path(args.out)
    net = build_supernet(QUICKSTART_SPACE)
    space = net.space
    console.print(f"[bold]space[/] {space.describe()}")
    matrix = space.sample_matrix(args.seed, args.samples)
    m, p = macs_matrix(space, matrix) / 1e6, params_matrix(space, matrix) / 1e6
    table = Table(title=f"{args.samples:,} random subnets (analytic cost)")
    for column in ("", "min", "median", "max"):
        table.add_column(column)
    table.add_row("MMACs", *(f"{v:.2f}" for v in (m.min(), np.median(m), m.max())))
    table.add_row("params (M)", *(f"{v:.3f}" for v in (p.min(), np.median(p), p.max())))
    console.print(table)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("exporting subnets (ONNX + parity check)", total=2)
        for label, arch in (("smallest", space.min_arch()), ("largest", space.max_arch())):
            path = export_bundle(net, arch, out / f"{label}_subnet")
            progress.advance(task)
            meta = json.loads((path / "arch.json").read_text())
            console.print(
                f"{label} subnet -> {path}  ({meta['macs'] / 1e6:.2f} MMACs, {meta['params']:,} params, "
                f"ONNX Runtime parity {meta['parity_max_abs_diff']:.1e})"
            )
    console.print(
        "[yellow]not built yet:[/] supernet training (issue 4), latency models (issue 5) and search "
        "(issue 6); the exported subnets carry untrained weights."
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

    quick = sub.add_parser("quickstart", help="build, cost and export the small-input supernet")
    quick.add_argument("--out", default="hwnas-out", help="output directory (default: hwnas-out)")
    quick.add_argument("--samples", type=int, default=10_000, help="random subnets to cost")
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
