"""Rich progress bars: one for `nas.train` training, one for the loosely shaped progress of jobs and the quickstart."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from api.cli.common import console

# Pairs of (done, total) field names, most specific first; `epoch`/`step` pairs are combined.
COUNTERS = (("done", "total"), ("evaluations", "budget"), ("step", "steps"), ("epoch", "epochs"))
HIDDEN = {"stage", "phase", "attempt", "at", "phase_index", "phases", "eta_s"}


class TrainingProgress:
    """A rich progress bar fed by `nas.train.ProgressEvent`s (one task per phase)."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  {task.fields[ips]:,.0f} img/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def counts(data: dict[str, Any]) -> tuple[float, float] | None:
    """(completed, total) of a progress payload, from whichever counter pair it has; None if it has none.

    ``epoch``/``epochs`` with ``step``/``steps`` (0-based, as `nas.train` reports) count steps overall.
    """
    n = {k: _number(data.get(k)) for k in ("epoch", "epochs", "step", "steps")}
    if all(v is not None for v in n.values()) and n["epochs"] and n["steps"]:
        epoch, epochs, step, steps = (float(v or 0) for v in n.values())
        return epoch * steps + step + 1, epochs * steps
    for done_key, total_key in COUNTERS:
        done, total = _number(data.get(done_key)), _number(data.get(total_key))
        if done is not None and total:
            return done, total
    return None


def describe(data: dict[str, Any], limit: int = 4) -> str:
    """The payload's other scalar fields, short: ``loss=1.23 target=cpu-ort``."""
    used = {k for pair in COUNTERS for k in pair} | HIDDEN
    parts = []
    for key, value in data.items():
        if key in used or isinstance(value, dict | list) or value is None:
            continue
        number = _number(value)
        parts.append(f"{key}={number:.4g}" if number is not None and isinstance(value, float) else f"{key}={value}")
    return " ".join(parts[:limit])


class StageProgress:
    """One rich progress bar per stage of a job or of the quickstart, fed with (stage, payload) pairs.

    Payloads are whatever the work reports (``done``/``total``, ``epoch``/``step``, ``evaluations``/``budget``,
    or none of them: the bar then just shows the stage is alive).
    """

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StageProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def finish(self) -> None:
        """Fill every started bar (progress is reported at intervals, so the last report may precede the end)."""
        for task in self.bar.tasks:
            if task.total is not None and task.completed > 0:
                self.bar.update(task.id, completed=task.total)

    def __call__(self, stage: str, data: dict[str, Any]) -> None:
        """Show `data` on the bar of `stage` (created on first use)."""
        label = str(data.get("stage") or data.get("phase") or stage)
        progress = counts(data)
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=progress[1] if progress else None, info="")
        if progress:
            self.bar.update(self.tasks[label], completed=progress[0], total=progress[1], info=describe(data))
        else:
            self.bar.update(self.tasks[label], info=describe(data))

    def log(self, message: str) -> None:
        """Print a line above the bars."""
        self.bar.console.print(message, highlight=False)
