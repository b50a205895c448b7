"""Where a target's models are measured: this process, or a device the service reaches another way.

A `LatencyDevice` measures batches of ONNX models for one target. Everything that measures (a
latency table, the end-to-end samples of a learned predictor, the validation of a search's front)
goes through one, so the same code serves a target on this machine (`LocalDevice`) and a device
outside the cluster whose agents take the models as tasks (``workers.agent_device.AgentDevice``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

from predictors.latency.measure import Measurement, MeasureSettings, measure_onnx
from predictors.latency.targets import Target, get_target

ProgressFn = Callable[[int, int], None]
Model = bytes | str | Path


class DeviceMeasurementError(RuntimeError):
    """The device could not measure some models of a batch.

    Args:
        target: the target's name.
        failures: what failed (``model <index in the batch>``, or a better name) -> the device's message.
    """

    def __init__(self, target: str, failures: dict[str, str]) -> None:
        self.target, self.failures = target, dict(failures)
        first = "; ".join(f"{what}: {message}" for what, message in list(failures.items())[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        super().__init__(f"target {target!r}: {len(failures)} model(s) could not be measured: {first}{more}")


class LatencyDevice(ABC):
    """Measures ONNX models for one target.

    Contract: `measure` returns one `Measurement` per model, in the order of `models`, each taken
    with `settings` on the target's device; it calls `progress` with (done, total) as results
    arrive; a model the device cannot run raises `DeviceMeasurementError` naming it (after the
    others were measured). `label` names the batch within one piece of work (e.g. ``"table/3"``):
    a device that keeps results across restarts of that work returns the kept ones instead of
    measuring again, so a repeated call with the same label and models measures nothing twice.
    """

    target: Target

    @abstractmethod
    def measure(
        self, models: Sequence[Model], settings: MeasureSettings, *, label: str, progress: ProgressFn | None = None
    ) -> list[Measurement]:
        """Measure every model of the batch (see the class docstring)."""


class LocalDevice(LatencyDevice):
    """The target measured in this process with ONNX Runtime (`measure_onnx`), one model after another.

    Args:
        target: an ONNX Runtime target available here.
    """

    def __init__(self, target: Target) -> None:
        self.target = target

    def measure(
        self, models: Sequence[Model], settings: MeasureSettings, *, label: str, progress: ProgressFn | None = None
    ) -> list[Measurement]:
        """Measure the models here, in order (`label` is not used: nothing is kept across calls)."""
        measured, failures = [], {}
        for i, model in enumerate(models):
            try:
                measured.append(measure_onnx(model, self.target, settings))
            except Exception as error:  # ONNX Runtime's own exception types derive from Exception only
                failures[model_name(i)] = f"{type(error).__name__}: {error}"
            if progress is not None:
                progress(i + 1, len(models))
        if failures:
            raise DeviceMeasurementError(self.target.name, failures)
        return measured


def model_name(index: int) -> str:
    """How a `DeviceMeasurementError` names the model at `index` of a batch."""
    return f"model {index}"


def as_device(target: LatencyDevice | Target | str) -> LatencyDevice:
    """A device for `target`: itself if it is one, else the target (or registered name) measured here."""
    if isinstance(target, LatencyDevice):
        return target
    return LocalDevice(get_target(target) if isinstance(target, str) else target)
