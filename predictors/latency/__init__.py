"""Latency of subnets on targets: measurement, per-layer lookup tables, learned predictors.

>>> from predictors.latency import LookupTable, LearnedLatencyPredictor, get_target, measure_onnx
>>> lut = LookupTable.from_ofa_yaml(["224_lookup_table.yaml"])   # OFA's table format
>>> lut.predict([arch])                                           # ms, numpy array
>>> lat = LearnedLatencyPredictor(space).fit(archs, ms)          # measured samples -> predictor

Importing this package loads neither torch nor onnxruntime; measuring and building tables do.
"""

from predictors.latency.drift import Drift, measure_batch
from predictors.latency.learned import LatencyMetrics, LearnedLatencyPredictor, latency_metrics
from predictors.latency.lut import LookupTable
from predictors.latency.measure import (
    Measurement,
    MeasureSettings,
    environment,
    measure_onnx,
    validate_latencies,
    validate_latency,
)
from predictors.latency.targets import Target, get_target, list_targets, register_target

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
