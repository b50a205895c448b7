"""Measuring a batch of models while watching for drift: a reference measured before and after.

A machine's speed can change in the middle of a batch (another process starts, the clock
throttles, the thread placement changes): each measurement then looks steady on its own (a low
coefficient of variation), yet the batch mixes two speeds. `measure_batch` measures a reference
model before and after the batch; when the two medians differ by more than the settings'
``cv_threshold`` (the same noise bar that flags a single measurement), it measures the batch
once more, bracketed again, keeps the second pass and flags it if it drifted too. The batch goes
through a `LatencyDevice`, so a remote device's batch is bracketed the same way (its reference
tasks are measured before the batch's tasks are handed out, and after they all came back).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from predictors.latency.devices import LatencyDevice, as_device
from predictors.latency.measure import Measurement, MeasureSettings
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
    target: LatencyDevice | Target,
    settings: MeasureSettings,
    progress: Callable[[int, int], None] | None = None,
    *,
    label: str = "batch",
) -> tuple[list[Measurement], Drift]:
    """Measure every model, between two measurements of the first (the reference); repeat once on drift.

    Args:
        models: ONNX models, as bytes or paths (at least one); the first is the reference.
        target: the device to measure on (a `Target` is measured in this process).
        settings: measurement settings; ``cv_threshold`` also bounds the reference's drift.
        progress: called with (done, total) as a pass's results arrive.
        label: names the batch on the device (see `LatencyDevice.measure`); each pass and reference
            measurement gets its own label below it.

    Returns:
        The kept pass's measurements, in the order of `models`, and its `Drift`.

    Raises:
        ValueError: no models.
        DeviceMeasurementError: the device could not measure some of them.
    """
    if not models:
        raise ValueError("measure_batch needs at least one model (the first is the reference)")
    device = as_device(target)

    def one_pass(n: int) -> tuple[list[Measurement], float, float, float]:
        before = device.measure(models[:1], settings, label=f"{label}/{n}/before")[0].median_ms
        measured = device.measure(models, settings, label=f"{label}/{n}/batch", progress=progress)
        after = device.measure(models[:1], settings, label=f"{label}/{n}/after")[0].median_ms
        return measured, before, after, (after - before) / before

    threshold = settings.cv_threshold
    measured, before, after, change = one_pass(1)
    first_change = change
    remeasured = abs(change) > threshold
    if remeasured:
        measured, before, after, change = one_pass(2)
    drift = Drift(before, after, change, threshold, abs(change) > threshold, remeasured, first_change)
    return measured, drift
