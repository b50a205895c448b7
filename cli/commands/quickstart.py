"""``hwnas quickstart``: `cli.quickstart.run_quickstart` with live progress bars and the front as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import console, duration

WEB_VIEW = "http://127.0.0.1:8000/ui/"
"""Where `hwnas serve` (default host and port) serves the web view."""


def quality_lines(result: Any) -> list[str]:
    """The figures that say whether to trust the front: predictors' quality, the front's shape, time per phase."""
    lines = []
    score = (result.predictor or {}).get("held_out")
    if score:
        fitted = result.predictor["samples"] - score["n"]
        lines.append(
            f"accuracy predictor ({result.predictor['kind']}): Kendall tau {_figure(score['kendall_tau'])}, "
            f"RMSE {100 * score['rmse']:.2f} points on {score['n']} held-out subnets evaluated for real "
            f"(fitted on {fitted}, then refitted on all {result.predictor['samples']} for the search)"
        )
    table = result.table_quality
    if table:
        lines.append(
            f"latency table (cpu-ort) against {table['n']} subnets measured end to end: "
            f"{100 * table['within_10']:.0f}% within ±10%, MAPE {table['mape']:.1f}%, "
            f"Kendall tau {table['kendall_tau']:.2f}"
        )
    a = result.agreement
    if a["n"]:
        rho = _figure(a["spearman_rho"])
        lines.append(
            f"validated front ({a['n']} subnets, accuracy on each exported bundle): Spearman rho of accuracy vs "
            f"measured latency {rho}; mean |predicted - validated| accuracy {100 * a['mean_abs_error']:.2f} points; "
            f"best {a['best_accuracy']:.4f}"
        )
    lines.extend(_drift_line(target, drift) for target, drift in result.drift.items() if drift["remeasured"])
    total = sum(v for k, v in result.phases.items() if not k.startswith("search: "))
    phases = ", ".join(f"{k} {duration(v)}" for k, v in result.phases.items())
    lines.append(f"time: {phases}; total {duration(total)}")
    return lines


def _drift_line(target: str, drift: dict[str, Any]) -> str:
    """What the reference subnet's latency did while the front was measured on `target`."""
    first = f"latency on {target} drifted while the front was measured ({100 * drift['first_relative_change']:+.0f}%"
    if not drift["flagged"]:
        return f"{first}), so it was measured again: steady the second time ({100 * drift['relative_change']:+.0f}%)"
    return (
        f"{first}, then {100 * drift['relative_change']:+.0f}% measured again; threshold "
        f"{100 * drift['threshold']:.0f}%): the measured latencies above are suspect; rerun on an idle machine"
    )


def _figure(value: float | None) -> str:
    """A correlation to two decimals, or "n/a" where it is undefined."""
    return "n/a" if value is None else f"{value:.2f}"


def quickstart(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("hwnas-out"),
    epochs: Annotated[int, typer.Option(help="supernet training epochs")] = 40,
    budget: Annotated[int, typer.Option(help="search evaluations (on the predictors)")] = 2000,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train a supernet on the demo set, build the cpu-ort latency model, search, validate, export the best."""
    from cli.commands.jobs import front_table
    from cli.progress import StageProgress
    from cli.quickstart import run_quickstart

    console.print(f"[bold]quickstart[/]: {epochs} training epochs, search budget {budget}, output in {out}")
    with StageProgress() as bars:
        result = run_quickstart(out, epochs=epochs, budget=budget, seed=seed, on_event=bars)
        bars.finish()
    objectives = sorted({k for p in result.front for kind in ("predicted", "validated") for k in p.get(kind) or {}})
    console.print(front_table(result.front, objectives, f"Pareto front ({len(result.front)} subnets)"))
    for line in quality_lines(result):
        console.print(line, highlight=False)
    console.print(f"best subnet's bundle: {result.best_bundle}")
    if result.plot:
        console.print(f"Pareto plot: {result.plot}")
    console.print(f"service state: {result.home} (serve it with: hwnas serve --home {result.home}; an API token "
                  f"for its user quickstart: hwnas admin create-token quickstart --home {result.home})")  # fmt: skip
    console.print(f"web view of this front: after `hwnas serve --home {result.home}`, open {WEB_VIEW} and sign in "
                  "with that token", highlight=False)  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``quickstart`` to `app`."""
    app.command("quickstart", help="Train on the demo set, search for cpu-ort, print the front, export the best.")(
        quickstart
    )
