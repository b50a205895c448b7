"""Drawing a Pareto front (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAXIMISED = ("accuracy",)
"""Objectives that are maximised; every other one is minimised."""


def axis_label(objective: str) -> str:
    """An axis label with units: ``latency:cpu-ort`` -> ``latency on cpu-ort (ms)``."""
    if objective.startswith("latency:"):
        return f"latency on {objective.removeprefix('latency:')} (ms)"
    return {"accuracy": "accuracy (top-1)", "macs": "MACs", "params": "parameters"}.get(objective, objective)


@dataclass(frozen=True)
class _Point:
    predicted: tuple[float, float] | None
    validated: tuple[float, float] | None
    key: str | None


def _pair(values: Mapping[str, Any] | None, x: str, y: str) -> tuple[float, float] | None:
    if not values or values.get(x) is None or values.get(y) is None:
        return None
    return float(values[x]), float(values[y])


def dominated(points: Sequence[tuple[float, float]], x_max: bool, y_max: bool) -> list[bool]:
    """For each (x, y), whether another point is at least as good on both and better on one."""
    sx, sy = (1 if x_max else -1), (1 if y_max else -1)

    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return sx * a[0] >= sx * b[0] and sy * a[1] >= sy * b[1] and a != b

    return [any(beats(other, p) for other in points) for p in points]


def plot_pareto(
    points: Sequence[dict[str, Any]],
    x: str,
    y: str,
    path: str | Path,
    title: str = "Pareto front",
    *,
    highlight: str | None = None,
) -> Path:
    """Draw a front, `y` against `x`: predicted points joined to their validated ones, the validated front as a line.

    Predicted values are hollow circles; each is joined by a thin line to the same subnet's
    validated value (filled). Validated points that another validated point dominates
    (``accuracy`` maximised, every other objective minimised) are marked with a cross; the others,
    the validated front, are connected in order of `x`. The subnet whose ``arch_key`` is `highlight` (e.g. the
    exported best) is marked with a star.

    Args:
        points: Pareto points as the API and the quickstart give them: dicts with ``predicted`` and/or
            ``validated`` objective values (``{"accuracy": 0.91, "latency:cpu-ort": 3.2}``) and ``arch_key``.
        x: the objective on the x axis.
        y: the objective on the y axis.
        path: the image file (its suffix picks the format: .png, .svg, .pdf).
        title: the plot's title.
        highlight: the ``arch_key`` of a point to mark.

    Returns:
        `path`.

    Raises:
        ValueError: no point has both `x` and `y` values.
    """
    from matplotlib.figure import Figure  # rendered by the Agg canvas; no pyplot, no global backend change

    drawn = [
        _Point(_pair(p.get("predicted"), x, y), _pair(p.get("validated"), x, y), p.get("arch_key")) for p in points
    ]
    drawn = [p for p in drawn if p.predicted or p.validated]
    if not drawn:
        objectives = sorted({k for p in points for kind in ("predicted", "validated") for k in (p.get(kind) or {})})
        raise ValueError(f"no Pareto point has both {x!r} and {y!r}; the points have {objectives}")
    fig = Figure(figsize=(7.2, 5.0), dpi=100)
    ax = fig.add_subplot()
    for p in drawn:
        if p.predicted and p.validated:
            ax.plot([p.predicted[0], p.validated[0]], [p.predicted[1], p.validated[1]], color="0.6", lw=0.8, zorder=1)
    predicted = sorted(p.predicted for p in drawn if p.predicted)
    if predicted:
        ax.scatter(*zip(*predicted, strict=True), facecolors="none", edgecolors="tab:blue", label="predicted", zorder=2)
    validated = sorted(p.validated for p in drawn if p.validated)
    if validated:
        bad = dominated(validated, x in MAXIMISED, y in MAXIMISED)
        good = [v for v, d in zip(validated, bad, strict=True) if not d]
        ax.plot(*zip(*good, strict=True), color="tab:orange", alpha=0.6, zorder=2)
        ax.scatter(*zip(*good, strict=True), color="tab:orange", label="validated front", zorder=3)
        worse = [v for v, d in zip(validated, bad, strict=True) if d]
        if worse:
            ax.scatter(*zip(*worse, strict=True), color="tab:red", marker="x", label="validated, dominated", zorder=3)
    for p in drawn:
        best = p.validated or p.predicted
        if highlight is not None and p.key == highlight and best is not None:
            ax.scatter(*best, marker="*", s=260, facecolors="gold", edgecolors="black", label="exported best", zorder=4)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    return out
