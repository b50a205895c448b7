"""The science commands: ``spaces``, ``export``, ``train`` (local, no service needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import CLIError, console, err_console


def floats(text: str | None, option: str) -> list[float] | None:
    """Comma-separated numbers, or a `CLIError` naming `option`."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise CLIError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def read_arch(text: str, space: Any) -> Any:
    """``min``, ``max``, a JSON arch or ``@file.json``."""
    if text in ("min", "max"):
        return space.min_arch() if text == "min" else space.max_arch()
    source = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise CLIError(f"--arch is not valid JSON ({exc.msg}); pass min, max, a JSON object or @file.json") from None


def spaces() -> None:
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


def export(
    space: Annotated[str, typer.Option(help="preset name (see `hwnas spaces`)")],
    arch: Annotated[str, typer.Option(help="min, max, a JSON arch, or @file.json")],
    out: Annotated[Path, typer.Option(help="bundle directory (or .zip with --zip)")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="OFA checkpoint (.pth/.pt via the weights-only loader, or .safetensors)")
    ] = None,
    zip: Annotated[bool, typer.Option("--zip", help="write a zip archive")] = False,
    num_classes: Annotated[int | None, typer.Option(help="classifier outputs (default: the preset's)")] = None,
    in_channels: Annotated[int | None, typer.Option(help="input channels (default: the preset's)")] = None,
    mean: Annotated[str | None, typer.Option(help="per-channel input mean, e.g. 0.485,0.456,0.406")] = None,
    std: Annotated[str | None, typer.Option(help="per-channel input std, e.g. 0.229,0.224,0.225")] = None,
    calibration_dataset: Annotated[
        str | None, typer.Option(help="recalibrate BatchNorm on this dataset's training images (OFA's protocol)")
    ] = None,
    calibration_data_dir: Annotated[str | None, typer.Option(help="where the calibration dataset is")] = None,
    calibration_images: Annotated[int, typer.Option(min=1, help="images used to recalibrate BatchNorm")] = 2000,
    no_calibration: Annotated[
        bool, typer.Option("--no-calibration", help="keep the checkpoint's BatchNorm statistics (not recalibrated)")
    ] = False,
) -> None:
    """Export one subnet of a supernet (optionally loaded from an OFA checkpoint) as an ONNX + safetensors bundle.

    A subnet's BatchNorm statistics must be recalibrated for it (the supernet's belong to no
    subnet): name the data with --calibration-dataset, or opt out with --no-calibration.
    """
    mean_values, std_values = floats(mean, "--mean"), floats(std, "--std")
    if (calibration_dataset is None) == (not no_calibration):
        raise CLIError(
            "pass --calibration-dataset NAME (the subnet's BatchNorm statistics are recalibrated on its training "
            "images) or --no-calibration (exported as the checkpoint has them), not both or neither"
        )
    from nas.export import Calibration, export_bundle
    from nas.supernet import build_supernet, read_state_dict
    from nas.train import BNCalibration

    net = build_supernet(space, num_classes=num_classes, in_channels=in_channels)
    chosen = net.space.canonical(read_arch(arch, net.space))
    if checkpoint:
        net.load_state_dict(read_state_dict(checkpoint))
    else:
        err_console.print("[yellow]warning:[/] no --checkpoint given: exporting randomly initialised weights")
    calibration: Calibration = "none"
    if calibration_dataset is not None:
        try:
            calibration = BNCalibration.of_dataset(calibration_dataset, calibration_data_dir, calibration_images)
        except (KeyError, FileNotFoundError, ValueError) as error:
            raise CLIError(f"--calibration-dataset {calibration_dataset}: {error}") from None
    path = export_bundle(net, chosen, out, calibration=calibration, mean=mean_values, std=std_values, archive=zip)
    meta = json.loads((path / "arch.json").read_text()) if path.is_dir() else None
    console.print(f"wrote {path}" + (f" ({meta['macs'] / 1e6:.1f} MMACs, {meta['params']:,} params)" if meta else ""))


def train_with_progress(config: Any, out: Path, workers: int, device: str = "cpu", cpus_per_worker: float = 1.0) -> Any:
    """Train `config` into `out` with a progress bar (on Ray Train with more than one worker).

    Raises:
        CLIError: the Ray cluster cannot place the workers (too few CPUs, no GPU).
    """
    from cli.progress import TrainingProgress
    from nas.train import train_supernet
    from workers.kinds import JobError

    with TrainingProgress() as progress:
        if workers == 1:
            return train_supernet(config, out, progress=progress, device=device)
        from workers.ray_tasks.train import train_supernet_on_ray

        try:
            return train_supernet_on_ray(
                config, out, num_workers=workers, use_gpu=device == "cuda", cpus_per_worker=cpus_per_worker,
                progress=progress,
            )  # fmt: skip
        except JobError as error:
            raise CLIError(str(error)) from None


def parse_settings(items: list[str], named: dict[str, Any]) -> dict[str, Any]:
    """`KEY=VALUE` items as a dict, VALUE parsed as JSON (`true`, `1`, `0.5`) or else kept as a string.

    Raises:
        typer.BadParameter: an item without `=`, or a KEY that has an option of its own (in `named`).
    """
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        if key in named:
            raise typer.BadParameter(f"{key} has an option of its own: --{key.replace('_', '-')}", param_hint="--set")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def train(
    out: Annotated[Path, typer.Option(help="run directory (checkpoints)")],
    space: Annotated[str, typer.Option(help="preset name")] = "ofa_mbv3_d234_e346_k357_32px",
    dataset: Annotated[str, typer.Option(help="demo, fashion_mnist, mnist, cifar10, imagefolder or npz")] = "demo",
    data_dir: Annotated[str | None, typer.Option(help="where the dataset is (directory, or the .npz file)")] = None,
    strategy: Annotated[str, typer.Option(help="sandwich or progressive_shrinking")] = "sandwich",
    epochs: Annotated[int, typer.Option()] = 10,
    batch_size: Annotated[int | None, typer.Option(help="default: the preset's")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate; default: the preset's")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers (1 = in this process)")] = 1,
    device: Annotated[
        str, typer.Option(help="cpu, cuda or cuda:N (cuda: one GPU per Ray Train worker; a run may resume on another)")
    ] = "cpu",
    cpus_per_worker: Annotated[float, typer.Option(min=0.01, help="CPUs each Ray Train worker asks for")] = 1.0,
    seed: Annotated[int, typer.Option()] = 0,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="any other TrainConfig field, VALUE as JSON; repeatable (e.g. --set zero_init_residual_bn=true)",
        ),
    ] = None,
) -> None:
    """Train a supernet (resumes from the checkpoint in --out if there is one)."""
    from pydantic import ValidationError

    from nas.train import TrainConfig

    named = {"space": space, "dataset": dataset, "data_dir": data_dir, "strategy": strategy, "epochs": epochs,
             "batch_size": batch_size, "lr": lr, "seed": seed}  # fmt: skip
    extra = parse_settings(settings or [], named)
    try:
        config = TrainConfig.model_validate(named | extra)
    except ValidationError as error:
        raise typer.BadParameter(str(error), param_hint="--set") from None
    if workers > 1 and device not in ("cpu", "cuda"):
        raise typer.BadParameter(
            "Ray Train gives each worker its own GPU: use --device cuda (or cpu) with --workers", param_hint="--device"
        )
    run = train_with_progress(config, out, workers, device, cpus_per_worker)
    last = run.history[-1]
    console.print(f"trained {len(run.history)} epochs; last loss {last['loss']:.3f}; checkpoint in {run.out_dir}")


def register(app: typer.Typer) -> None:
    """Add the science commands to `app`."""
    app.command("spaces", help="List search-space presets.")(spaces)
    app.command("export", help="Export a subnet as an ONNX + safetensors bundle.")(export)
    app.command("train", help="Train a supernet (resumes from the checkpoint in --out).")(train)
