"""The ``hwnas`` command line.

Commands built so far: ``spaces``, ``export``, ``train``, ``quickstart``, ``worker``, ``serve``, ``agent``
and ``admin``. User errors end with exit code 1 and one readable line. ``agent`` imports only the device
agent (no torch, no SQL), so it runs on a board that has onnxruntime, numpy and httpx.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
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


def cmd_worker(args: argparse.Namespace) -> None:
    """Run queued jobs from the store that HWNAS_HOME / HWNAS_DATABASE_URL name (on Ray unless --in-process)."""
    import logging
    import signal

    from api.settings import Settings
    from workers.runner import NotMigratedError, runner_from_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        runner = runner_from_settings(
            Settings.from_env(), in_process=args.in_process, migrate=args.migrate, lease_s=args.lease,
            poll_s=args.poll, kinds=args.kinds.split(",") if args.kinds else None, worker_id=args.worker_id,
        )  # fmt: skip
    except NotMigratedError as exc:
        raise CLIError(str(exc)) from None
    stop = threading.Event()
    # SIGINT/SIGTERM: finish the current job, then exit.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    console.print(f"worker {runner.worker_id} on {runner.queue.db.url.render_as_string(hide_password=True)}")
    try:
        count = runner.serve(stop=stop, max_jobs=1 if args.once else None, drain=args.once or args.drain)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        runner.queue.db.dispose()
    console.print(f"worker {runner.worker_id}: ran {count} job(s)")


def cmd_agent(args: argparse.Namespace) -> None:
    """Run the device agent (``workers.agent``); it exits 1 with one line when the service refuses it."""
    from workers.agent import run

    code = run(args)
    if code:
        raise SystemExit(code)


def _settings(args: argparse.Namespace) -> Any:
    from api.settings import Settings

    settings = Settings.from_env()
    return settings.model_copy(update={"home": Path(args.home)}) if getattr(args, "home", None) else settings


def cmd_admin_create_user(args: argparse.Namespace) -> None:
    """Create a user (and, with --token, an API token for it)."""
    from api.auth import create_token, create_user
    from api.db import Database

    db = Database(_settings(args).db_url)
    user = create_user(db, args.name, is_admin=args.admin)
    console.print(f"created user {user.name!r} (id {user.id}{', admin' if user.is_admin else ''})")
    if args.token:
        console.print(create_token(db, user.id, name="created with the user"), highlight=False)


def cmd_admin_create_token(args: argparse.Namespace) -> None:
    """Print a new API token of a user (the secret is shown only now)."""
    from api.auth import create_token
    from api.db import Database

    console.print(create_token(Database(_settings(args).db_url), args.user, name=args.label), highlight=False)


def cmd_serve(args: argparse.Namespace) -> None:
    """The API with an embedded job worker on one machine: migrate, make the first user, serve."""
    import threading

    import uvicorn

    from api.app import create_app
    from api.auth import ensure_first_user
    from api.db import Database
    from workers.runner import runner_from_settings

    settings = _settings(args)
    runner = runner_from_settings(settings, in_process=not args.ray, migrate=True)
    token = ensure_first_user(Database(settings.db_url))
    if token:
        console.print(f"created user 'admin'; its API token (shown once): [bold]{token}[/]", highlight=False)
    stop = threading.Event()
    worker = threading.Thread(target=runner.serve, kwargs={"stop": stop}, name="hwnas-worker", daemon=True)
    if not args.no_worker:
        worker.start()
    console.print(f"hwnas API on http://{args.host}:{args.port} (state in {settings.home_dir})")
    try:
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    finally:
        stop.set()


def _add_service_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="the API + an embedded job worker + SQLite, in one command")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--home", help="state directory (default: HWNAS_HOME or ~/.hwnas)")
    serve.add_argument("--ray", action="store_true", help="run jobs on Ray (a local one unless RAY_ADDRESS is set)")
    serve.add_argument("--no-worker", action="store_true", help="serve the API only")
    serve.set_defaults(func=cmd_serve)

    from workers.agent import add_arguments

    agent = sub.add_parser("agent", help="measure latency tasks of a target on this device for a remote service")
    add_arguments(agent)
    agent.set_defaults(func=cmd_agent)

    admin = sub.add_parser("admin", help="users and API tokens").add_subparsers(dest="admin_command", required=True)
    user = admin.add_parser("create-user", help="create a user")
    user.add_argument("name")
    user.add_argument("--admin", action="store_true", help="an administrator")
    user.add_argument("--token", action="store_true", help="also print a new API token for the user")
    user.add_argument("--home", help="state directory (default: HWNAS_HOME or ~/.hwnas)")
    user.set_defaults(func=cmd_admin_create_user)
    token = admin.add_parser("create-token", help="print a new API token of a user")
    token.add_argument("user", help="the user's name")
    token.add_argument("--label", default="", help="a name for the token")
    token.add_argument("--home", help="state directory (default: HWNAS_HOME or ~/.hwnas)")
    token.set_defaults(func=cmd_admin_create_token)


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

    worker = sub.add_parser("worker", help="run queued jobs (training, export, ...) from the SQL store")
    worker.add_argument("--once", action="store_true", help="run at most one job, then exit")
    worker.add_argument("--drain", action="store_true", help="exit when no job is left to claim")
    worker.add_argument("--poll", type=float, help="seconds between looks at an empty queue (default: settings)")
    worker.add_argument("--lease", type=float, help="lease length in seconds (default: settings)")
    worker.add_argument("--kinds", help="only these job kinds, comma-separated")
    worker.add_argument("--worker-id", help="name in leases (default: host:pid:random)")
    worker.add_argument("--in-process", action="store_true", help="run the work in this process, not on Ray")
    worker.add_argument("--migrate", action="store_true", help="upgrade the database schema first")
    worker.set_defaults(func=cmd_worker)
    _add_service_commands(sub)
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
