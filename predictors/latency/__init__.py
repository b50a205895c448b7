"""Latency of subnets on targets: measurement, per-layer lookup tables, learned predictors.

>>> from predictors.latency import LookupTable, LearnedLatencyPredictor, get_target, measure_onnx
>>> lut = LookupTable.from_ofa_yaml(["224_lookup_table.yaml"])   # OFA's table format
>>> lut.predict([arch])                                           # ms, numpy array
>>> lat = LearnedLatencyPredictor(space).fit(archs, ms)          # measured samples -> predictor

Importing this package loads neither torch nor onnxruntime; measuring and building tables do. Only
`measure` and `targets` load with it; the rest (`drift`, `lut`, `learned`: pyyaml, the search spaces)
loads on first use of its names, so that the device agent, which only measures, stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from predictors.latency.measure import (
    Measurement,
    MeasureSettings,
    environment,
    measure_onnx,
    validate_latencies,
    validate_latency,
)
from predictors.latency.targets import Target, get_target, list_targets, register_target

if TYPE_CHECKING:
    from predictors.latency.drift import Drift, measure_batch
    from predictors.latency.learned import LatencyMetrics, LearnedLatencyPredictor, latency_metrics
    from predictors.latency.lut import LookupTable

_LAZY = {
    "Drift": "drift",
    "measure_batch": "drift",
    "LatencyMetrics": "learned",
    "LearnedLatencyPredictor": "learned",
    "latency_metrics": "learned",
    "LookupTable": "lut",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"predictors.latency.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Drift",
    "LatencyMetrics",
    "LearnedLatencyPredictor",
    "LookupTable",
    "MeasureSettings",
    "Measurement",
    "Target",
    "environment",
    "get_target",
    "latency_metrics",
    "list_targets",
    "measure_batch",
    "measure_onnx",
    "register_target",
    "validate_latencies",
    "validate_latency",
]
