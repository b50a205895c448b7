"""``hwnas quickstart``: `api.quickstart.run_quickstart` with live progress bars and the front as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import console


def quickstart(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("hwnas-out"),
    epochs: Annotated[int, typer.Option(help="supernet training epochs")] = 6,
    budget: Annotated[int, typer.Option(help="search evaluations (on the predictors)")] = 2000,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train a supernet on the demo set, build the cpu-ort latency model, search, validate, export the best."""
    from api.cli.jobs import front_table
    from api.cli.progress import StageProgress
    from api.quickstart import run_quickstart

    console.print(f"[bold]quickstart[/]: {epochs} training epochs, search budget {budget}, output in {out}")
    with StageProgress() as bars:
        result = run_quickstart(out, epochs=epochs, budget=budget, seed=seed, on_event=bars)
        bars.finish()
    objectives = sorted({k for p in result.front for kind in ("predicted", "validated") for k in p.get(kind) or {}})
    console.print(front_table(result.front, objectives, f"Pareto front ({len(result.front)} subnets)"))
    console.print(f"best subnet's bundle: {result.best_bundle}")
    if result.plot:
        console.print(f"Pareto plot: {result.plot}")
    console.print(f"service state: {result.home} (serve it with: hwnas serve --home {result.home})")


def register(app: typer.Typer) -> None:
    """Add ``quickstart`` to `app`."""
    app.command("quickstart", help="Train on the demo set, search for cpu-ort, print the front, export the best.")(
        quickstart
    )
