"""Measuring a batch of models while watching for drift: a reference measured before and after.

A machine's speed can change in the middle of a batch (another process starts, the clock
throttles, the thread placement changes): each measurement then looks steady on its own (a low
coefficient of variation), yet the batch mixes two speeds. `measure_batch` measures a reference
model before and after the batch; when the two medians differ by more than the settings'
``cv_threshold`` (the same noise bar that flags a single measurement), it measures the batch
once more, bracketed again, keeps the second pass and flags it if it drifted too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from predictors.latency.measure import Measurement, MeasureSettings, measure_onnx
from predictors.latency.targets import Target


@dataclass(frozen=True)
class Drift:
    """How far the reference's latency moved while a batch was measured.

    Attributes:
        reference_before_ms: the reference's median before the kept pass.
        reference_after_ms: and after it.
        relative_change: ``(after - before) / before`` of the kept pass.
        threshold: the largest ``|relative_change|`` accepted (the settings' ``cv_threshold``).
        flagged: the kept pass drifted beyond the threshold, so its values are suspect.
        remeasured: the first pass drifted beyond the threshold, so the batch was measured again
            and the second pass kept.
        first_relative_change: the first pass's relative change (the kept one's unless remeasured).
    """

    reference_before_ms: float
    reference_after_ms: float
    relative_change: float
    threshold: float
    flagged: bool
    remeasured: bool
    first_relative_change: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def measure_batch(
    models: Sequence[bytes | str | Path],
    target: Target,
    settings: MeasureSettings,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Measurement], Drift]:
    """Measure every model, between two measurements of the first (the reference); repeat once on drift.

    Args:
        models: ONNX models, as bytes or paths (at least one); the first is the reference.
        target: the ONNX Runtime target, measurable here.
        settings: measurement settings; ``cv_threshold`` also bounds the reference's drift.
        progress: called with (done, total) after each model of a pass.

    Returns:
        The kept pass's measurements, in the order of `models`, and its `Drift`.

    Raises:
        ValueError: no models (or as `measure_onnx`).
    """
    if not models:
        raise ValueError("measure_batch needs at least one model (the first is the reference)")

    def one_pass() -> tuple[list[Measurement], float, float, float]:
        before = measure_onnx(models[0], target, settings).median_ms
        measured = []
        for model in models:
            measured.append(measure_onnx(model, target, settings))
            if progress is not None:
                progress(len(measured), len(models))
        after = measure_onnx(models[0], target, settings).median_ms
        return measured, before, after, (after - before) / before

    threshold = settings.cv_threshold
    measured, before, after, change = one_pass()
    first_change = change
    remeasured = abs(change) > threshold
    if remeasured:
        measured, before, after, change = one_pass()
    drift = Drift(before, after, change, threshold, abs(change) > threshold, remeasured, first_change)
    return measured, drift
