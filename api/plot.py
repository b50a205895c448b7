"""Drawing a Pareto front (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _values(points: Sequence[dict[str, Any]], kind: str, x: str, y: str) -> tuple[list[float], list[float]]:
    pairs = [((p.get(kind) or {}).get(x), (p.get(kind) or {}).get(y)) for p in points]
    kept = sorted((float(a), float(b)) for a, b in pairs if a is not None and b is not None)
    return [a for a, _ in kept], [b for _, b in kept]


def plot_pareto(
    points: Sequence[dict[str, Any]], x: str, y: str, path: str | Path, title: str = "Pareto front"
) -> Path:
    """Draw the front's points, `y` against `x`, predicted (hollow) and validated (filled) values, into an image.

    Args:
        points: Pareto points as the API and the quickstart give them: dicts with ``predicted`` and/or
            ``validated`` objective values (``{"accuracy": 0.91, "latency:cpu-ort": 3.2}``).
        x: the objective on the x axis.
        y: the objective on the y axis.
        path: the image file (its suffix picks the format: .png, .svg, .pdf).
        title: the plot's title.

    Returns:
        `path`.

    Raises:
        ValueError: no point has both `x` and `y` values.
    """
    from matplotlib.figure import Figure  # rendered by the Agg canvas; no pyplot, no global backend change

    series = {kind: _values(points, kind, x, y) for kind in ("predicted", "validated")}
    if not any(xs for xs, _ in series.values()):
        objectives = sorted({k for p in points for kind in series for k in (p.get(kind) or {})})
        raise ValueError(f"no Pareto point has both {x!r} and {y!r}; the points have {objectives}")
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    ax = fig.add_subplot()
    for kind, color in (("predicted", "tab:blue"), ("validated", "tab:orange")):
        xs, ys = series[kind]
        if xs:
            face = "none" if kind == "predicted" else color
            ax.scatter(xs, ys, label=kind, edgecolors=color, facecolors=face)
            ax.plot(xs, ys, color=color, alpha=0.4)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    return out
