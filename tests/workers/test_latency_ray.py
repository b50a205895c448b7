"""Measurement tasks on Ray go to the nodes advertising `target:<name>` and run there one at a time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from nas.spaces import get_space
from predictors.latency import MeasureSettings, get_target
from predictors.latency.keys import table_layers
from predictors.latency.models import layer_onnx
from workers.ray_tasks.latency import build_table_on_ray, measure_onnx_on_ray, target_resource

SMALL = "ofa_mbv3_d234_e346_k357_32px"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, resources={target_resource("cpu-ort"): 1}, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_tasks_hold_the_target_one_at_a_time(local_ray: None) -> None:
    space = get_space(SMALL)
    layers = list(table_layers(space.backbone, [32]).values())[:4]
    settings = MeasureSettings(warmup_runs=3, warmup_seconds=0.3, runs=20)
    records = measure_onnx_on_ray([layer_onnx(layer) for layer in layers], "cpu-ort", settings)
    assert len(records) == 4
    for r in records:
        assert r.measurement.target == "cpu-ort" and r.measurement.median_ms > 0
        assert r.measurement.environment["provider"] == "CPUExecutionProvider"
    spans = sorted((r.started, r.finished) for r in records)
    # Two CPUs would run two tasks at once; the single target unit serialises them.
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(spans)), spans
    assert target_resource(get_target("cpu-ort")) == "target:cpu-ort"


def test_table_build_on_ray(local_ray: None) -> None:
    space = get_space(SMALL, kernel_sizes=[3], expand_ratios=[3])
    table = build_table_on_ray(space, "cpu-ort", [24], MeasureSettings(warmup_runs=1, warmup_seconds=0.0, runs=5))
    assert table.target == "cpu-ort" and table.resolutions == [24]
    assert table.predict([space.min_arch(24)])[0] > 0
