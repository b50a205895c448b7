"""Progress of `nas.train` training and of the loosely shaped progress of jobs and the quickstart.

On a terminal: live rich bars. On a file or a pipe a bar would only be drawn once, collapsed, at
the end; there `ProgressLines` prints a line when a stage starts, after every epoch (payloads with
``epoch``/``step``) or every tenth of its count, each with its figures and the stage's elapsed time.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.console import console, duration

# Pairs of (done, total) field names, most specific first; `epoch`/`step` pairs are combined.
COUNTERS = (("done", "total"), ("evaluations", "budget"), ("step", "steps"), ("epoch", "epochs"))
HIDDEN = {"stage", "phase", "attempt", "at", "phase_index", "phases", "eta_s"}


class TrainingProgress:
    """A rich progress bar fed by `nas.train.ProgressEvent`s (one task per phase); a line per epoch off a terminal.

    Args:
        out: where to show it.
    """

    def __init__(self, out: Console = console) -> None:
        self.lines = None if out.is_terminal else ProgressLines(out)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  {task.fields[ips]:,.0f} img/s"),
            TimeRemainingColumn(),
            console=out,
            disable=self.lines is not None,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TrainingProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, event: Any) -> None:
        """Advance the bar of the event's phase."""
        label = f"{event.phase} ({event.phase_index + 1}/{event.phases})"
        if self.lines is not None:
            self.lines(label, asdict(event))
            return
        if event.phase not in self.tasks:
            self.tasks[event.phase] = self.bar.add_task(label, total=event.epochs * event.steps, loss=0.0, ips=0.0)
        self.bar.update(
            self.tasks[event.phase],
            completed=event.epoch * event.steps + event.step + 1,
            loss=event.loss,
            ips=event.images_per_s,
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def epoch_steps(data: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """(epoch, epochs, step, steps) of a training payload (0-based, as `nas.train` reports them), else None."""
    n = [_number(data.get(k)) for k in ("epoch", "epochs", "step", "steps")]
    if any(v is None for v in n) or not n[1] or not n[3]:
        return None
    epoch, epochs, step, steps = (int(v or 0) for v in n)
    return epoch, epochs, step, steps


def counts(data: dict[str, Any]) -> tuple[float, float] | None:
    """(completed, total) of a progress payload, from whichever counter pair it has; None if it has none.

    ``epoch``/``epochs`` with ``step``/``steps`` count steps overall.
    """
    training = epoch_steps(data)
    if training is not None:
        epoch, epochs, step, steps = training
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


class ProgressLines:
    """Progress as plain lines, for a file or a pipe: one when a stage starts, then one per epoch or tenth.

    A line is the stage, where it is (``epoch 3/6 step 40/40``, or ``45/100 (45%)``), the payload's
    other figures and the time since the stage's first event. A payload without counters prints a
    line whenever its figures change.

    Args:
        out: where the lines go.
    """

    def __init__(self, out: Console) -> None:
        self.out = out
        self.stages: dict[str, tuple[object, float]] = {}  # label -> (last milestone printed, first event's time)

    def __call__(self, label: str, data: dict[str, Any]) -> None:
        """Print a line for `data` if it reaches a new milestone of stage `label`."""
        training, progress, info = epoch_steps(data), counts(data), describe(data)
        milestone: object = info
        position = ""
        if training is not None:
            epoch, epochs, step, steps = training
            milestone = (epoch * steps + step + 1) // steps  # epochs completed
            position = f"epoch {epoch + 1}/{epochs} step {step + 1}/{steps}"
        elif progress is not None:
            done, total = progress
            milestone = int(10 * done / total)
            position = f"{done:g}/{total:g} ({100 * done / total:.0f}%)"
        now = time.monotonic()
        seen = self.stages.get(label)
        if seen is not None and seen[0] == milestone:
            return
        started = seen[1] if seen is not None else now
        self.stages[label] = (milestone, started)
        parts = [f"{label:<14}", position, info, f"[{duration(now - started)}]"]
        self.out.print(" ".join(p for p in parts if p), markup=False, highlight=False)


class StageProgress:
    """One rich progress bar per stage of a job or of the quickstart, fed with (stage, payload) pairs.

    Payloads are whatever the work reports (``done``/``total``, ``epoch``/``step``, ``evaluations``/``budget``,
    or none of them: the bar then just shows the stage is alive). Off a terminal, `ProgressLines` prints
    them instead.

    Args:
        out: where to show it.
    """

    def __init__(self, out: Console = console) -> None:
        self.lines = None if out.is_terminal else ProgressLines(out)
        self.bar = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=out,
            disable=self.lines is not None,
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
        if self.lines is not None:
            self.lines(label, data)
            return
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
