"""Latency measurement with ONNX Runtime: warm-up, timed runs, robust statistics, environment.

This module is what a remote device agent runs, so at import time it needs only the standard
library and numpy (onnxruntime is imported when a measurement starts; never torch). A
measurement's settings and its result are plain data with ``to_dict`` / ``from_dict``, so they
travel as JSON.

A measurement warms up until it has done at least ``warmup_runs`` runs *and* spent at least
``warmup_seconds``, then times ``runs`` runs. If their coefficient of variation is above
``cv_threshold`` it times them again (up to ``retries`` more times), keeps the steadiest
attempt, and flags the result ``noisy`` when even that one is above the threshold.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from predictors.latency.targets import Target

_D = TypeVar("_D")


def validate_latency(value: object, what: str = "latency") -> float:
    """A latency in ms as a float, checked to be finite and positive.

    Raises:
        ValueError: not a number, not finite, zero or negative; the message names `what`.
    """
    try:
        ms = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of milliseconds, got {value!r}") from None
    if not math.isfinite(ms) or ms <= 0:
        raise ValueError(f"{what} must be finite and > 0 ms, got {value!r}")
    return ms


def validate_latencies(values: Iterable[object], what: str = "latencies") -> npt.NDArray[np.float64]:
    """`validate_latency` over a sequence; the error names the index of the first bad value."""
    out = []
    for i, value in enumerate(values):
        out.append(validate_latency(value, f"{what}[{i}]"))
    return np.asarray(out, dtype=np.float64)


def _from_dict(cls: type[_D], data: dict[str, Any]) -> _D:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(names)}")
    return cls(**data)


@dataclass(frozen=True)
class MeasureSettings:
    """How to measure (the same for every target).

    Attributes:
        warmup_runs: at least this many untimed runs first.
        warmup_seconds: and at least this much time spent warming up.
        runs: timed runs per attempt.
        cv_threshold: a result whose coefficient of variation (std / mean) is above this is noisy.
        retries: extra attempts when an attempt is noisy.
        seed: seed of the random input.
    """

    warmup_runs: int = 10
    warmup_seconds: float = 0.2
    runs: int = 50
    cv_threshold: float = 0.15
    retries: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        # the maximums keep one request from holding a device for days (runs: 10**30 was accepted)
        counts = (("warmup_runs", 0, 10_000), ("runs", 2, 10_000), ("retries", 0, 10), ("seed", 0, 2**32 - 1))
        for name, low, high in counts:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        for name, limit in (("warmup_seconds", 60.0), ("cv_threshold", 100.0)):
            number = getattr(self, name)
            if not isinstance(number, int | float) or not math.isfinite(number) or not 0 <= number <= limit:
                raise ValueError(f"{name} must be a finite number from 0 to {limit}, got {number!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasureSettings:
        """Inverse of `to_dict` (missing fields take their defaults).

        Raises:
            ValueError: unknown fields or invalid values, naming them.
        """
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Measurement:
    """The result of one measurement (all latencies in ms).

    Attributes:
        median_ms: median of the timed runs of the kept attempt; the figure to use.
        p90_ms: 90th percentile.
        p95_ms: 95th percentile.
        mean_ms: mean.
        cv: coefficient of variation (std / mean).
        runs: timed runs in the kept attempt.
        attempts: attempts made (1 + retries used).
        noisy: the kept attempt's cv is above the threshold.
        target: the target's name.
        input_shape: the full input shape, batch included.
        environment: where it was measured (see `environment`).
    """

    median_ms: float
    p90_ms: float
    p95_ms: float
    mean_ms: float
    cv: float
    runs: int
    attempts: int
    noisy: bool
    target: str
    input_shape: list[int]
    environment: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("median_ms", "p90_ms", "p95_ms", "mean_ms"):
            validate_latency(getattr(self, name), name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Inverse of `to_dict`.

        Raises:
            ValueError: unknown fields, or latencies that are not finite and positive.
        """
        return _from_dict(cls, data)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one, else `platform`)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text(errors="replace")
        for pattern in (r"model name\s*:\s*(.+)", r"Hardware\s*:\s*(.+)", r"Model\s*:\s*(.+)", r"cpu model\s*:\s*(.+)"):
            found = re.search(pattern, text)
            if found:
                return found.group(1).strip()
    return platform.processor() or platform.machine() or "unknown"


GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
"""Where Linux shows the CPU frequency governor (``performance`` keeps a board's clock, and its latencies, steady)."""


def cpu_governor() -> str | None:
    """The CPU frequency governor of the first core, or None where it cannot be read (no cpufreq, not Linux)."""
    try:
        return GOVERNOR.read_text().strip() or None
    except OSError:
        return None


def environment(target: Target, runtime_version: str | None = None) -> dict[str, Any]:
    """Where a measurement runs: the device, its threads, the runtime, Python.

    The device: CPU model, logical cores, machine (``aarch64``, ``x86_64``), frequency governor (None where unreadable);
    the runtime: its name, version and provider, and for ONNX Runtime the providers this install offers.
    """
    providers = None
    if target.runtime == "onnxruntime":
        import onnxruntime as ort

        runtime_version = runtime_version or ort.__version__
        providers = list(ort.get_available_providers())
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "machine": platform.machine(),
        "cpu_governor": cpu_governor(),
        "os": platform.platform(),
        "threads": target.threads,
        "inter_op_threads": target.inter_op_threads,
        "runtime": target.runtime,
        "runtime_version": runtime_version,
        "provider": target.provider,
        "providers": providers,
        "python": platform.python_version(),
    }


def _summary(times_ms: npt.NDArray[np.float64]) -> dict[str, float]:
    mean = float(times_ms.mean())
    return {
        "median_ms": float(np.median(times_ms)),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "p95_ms": float(np.percentile(times_ms, 95)),
        "mean_ms": mean,
        "cv": float(times_ms.std(ddof=1) / mean) if mean > 0 else math.inf,
    }


def time_runs(
    run_ms: Callable[[], float],
    settings: MeasureSettings,
    *,
    target: Target,
    input_shape: list[int],
    env: dict[str, Any],
) -> Measurement:
    """Warm up, time, retry while noisy: the measurement loop shared by every runtime.

    Args:
        run_ms: runs the model once and returns how long it took in ms.
        settings: the measurement settings.
        target: recorded in the result.
        input_shape: recorded in the result.
        env: recorded in the result.

    Raises:
        ValueError: a run reported a latency that is not finite and positive.
    """
    start, done = time.perf_counter(), 0
    while done < settings.warmup_runs or time.perf_counter() - start < settings.warmup_seconds:
        run_ms()
        done += 1
    best: dict[str, float] | None = None
    attempt = 0
    for attempt in range(1, settings.retries + 2):  # noqa: B007 (the count is recorded)
        times = np.array([validate_latency(run_ms(), "measured run") for _ in range(settings.runs)])
        stats = _summary(times)
        if best is None or stats["cv"] < best["cv"]:
            best = stats
        if stats["cv"] <= settings.cv_threshold:
            break
    assert best is not None
    return Measurement(
        **best,
        runs=settings.runs,
        attempts=attempt,
        noisy=best["cv"] > settings.cv_threshold,
        target=target.name,
        input_shape=input_shape,
        environment=env,
    )


def _input_shape(session: Any, input_shape: tuple[int, ...] | None, batch_size: int) -> list[int]:
    meta = session.get_inputs()[0]
    if input_shape is not None:
        if len(input_shape) != len(meta.shape) - 1 or any(not isinstance(d, int) or d < 1 for d in input_shape):
            raise ValueError(
                f"input_shape must give the {len(meta.shape) - 1} positive non-batch dims of input "
                f"{meta.name!r} {meta.shape}, got {input_shape!r}"
            )
        fixed = [(i, d, int(g)) for i, (d, g) in enumerate(zip(meta.shape[1:], input_shape, strict=True), 1)]
        clash = [(i, d, g) for i, d, g in fixed if isinstance(d, int) and d != g]
        if clash:
            raise ValueError(f"input_shape {tuple(input_shape)} contradicts input {meta.name!r} {meta.shape}")
        return [batch_size, *input_shape]
    rest = meta.shape[1:]
    if any(not isinstance(d, int) for d in rest):
        raise ValueError(f"input {meta.name!r} has dynamic dims {meta.shape}; pass input_shape")
    return [batch_size, *rest]


def measure_onnx(
    model: bytes | str | Path,
    target: Target,
    settings: MeasureSettings | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Measurement:
    """Measure an ONNX model's latency with ONNX Runtime on this machine, as `target` says.

    Args:
        model: the model as bytes or a path.
        target: an ONNX Runtime target (threads, batch size, provider, provider options).
        settings: warm-up, runs and noise handling (defaults: `MeasureSettings()`).
        input_shape: the first input's shape without the batch dim; default: the model's own.

    Raises:
        ValueError: a torch target, or an input shape that cannot be determined.
        RuntimeError: the target's provider is not available here.
    """
    import onnxruntime as ort

    settings = settings or MeasureSettings()
    if target.runtime != "onnxruntime":
        raise ValueError(f"target {target.name!r} runs {target.runtime!r}; measure_onnx needs an onnxruntime target")
    if target.provider not in ort.get_available_providers():
        raise RuntimeError(
            f"target {target.name!r} needs ONNX Runtime's {target.provider}; "
            f"available here: {ort.get_available_providers()}"
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = target.threads
    options.inter_op_num_threads = target.inter_op_threads
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(
        source, options, providers=[target.provider], provider_options=[dict(target.provider_options)]
    )
    meta = session.get_inputs()[0]
    shape = _input_shape(session, input_shape, target.batch_size)
    dtype = np.float16 if meta.type == "tensor(float16)" else np.float32
    x = np.random.default_rng(settings.seed).standard_normal(shape).astype(dtype)
    feeds = {meta.name: x}

    def run_ms() -> float:
        t = time.perf_counter_ns()
        session.run(None, feeds)
        return (time.perf_counter_ns() - t) / 1e6

    return time_runs(run_ms, settings, target=target, input_shape=shape, env=environment(target, ort.__version__))
