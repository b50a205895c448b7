"""Targets and ONNX Runtime measurement (predictors.latency.targets / measure / torch_cuda)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from typing import Any

import pytest

from nas.spaces import get_space
from predictors.latency import (
    Measurement,
    MeasureSettings,
    Target,
    get_target,
    list_targets,
    measure_batch,
    measure_onnx,
    register_target,
    validate_latencies,
    validate_latency,
)
from predictors.latency.models import subnet_onnx

FAST = MeasureSettings(warmup_runs=3, warmup_seconds=0.02, runs=10)
SMALL = "ofa_mbv3_d234_e346_k357_32px"


@pytest.fixture(scope="module")
def small_model() -> bytes:
    space = get_space(SMALL)
    return subnet_onnx(space, space.min_arch(28))


def test_builtin_targets() -> None:
    assert {"cpu-ort", "cuda-ort", "cuda-torch"} <= set(list_targets())
    cpu = get_target("cpu-ort")
    assert (cpu.threads, cpu.inter_op_threads, cpu.provider) == (1, 1, "CPUExecutionProvider")
    assert cpu.availability() == (True, "")
    assert get_target("cuda-torch").provider is None


def test_unknown_target_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"'nope'.*cpu-ort"):
        get_target("nope")


def test_register_user_target_and_roundtrip() -> None:
    rpi = Target("rpi4-ort-test", device="arm", threads=4, remote=True)
    register_target(rpi)
    assert get_target("rpi4-ort-test") is rpi
    ok, reason = rpi.availability()
    assert not ok and "hwnas agent" in reason
    assert Target.from_dict(json.loads(json.dumps(rpi.to_dict()))) == rpi
    with pytest.raises(ValueError, match="already registered"):
        register_target(rpi)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"runtime": "tvm"}, "runtime 'tvm'"),
        ({"runtime": "torch", "device": "cpu"}, "device 'cuda'"),
        ({"threads": 0}, "threads"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"precision": "fp16"}, "fp16"),
        ({"precision": "int3"}, "precision"),
    ],
)
def test_bad_targets(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Target("bad", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown target field"):
        Target.from_dict({"name": "x", "cores": 2})


def test_cuda_targets_are_skipped_cleanly_without_a_gpu() -> None:
    import torch

    for name in ("cuda-ort", "cuda-torch"):
        ok, reason = get_target(name).availability()
        if not ok:
            assert "CUDA" in reason
    if not torch.cuda.is_available():
        assert not get_target("cuda-torch").available


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -1.0, "fast", None])
def test_validate_latency_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="latency"):
        validate_latency(bad)


def test_validate_latencies_names_the_index() -> None:
    assert validate_latencies([1, 2.5]).tolist() == [1.0, 2.5]
    with pytest.raises(ValueError, match=r"ms\[2\]"):
        validate_latencies([1.0, 2.0, -3.0], "ms")


def test_settings_roundtrip_and_errors() -> None:
    s = MeasureSettings(runs=7, cv_threshold=0.2)
    assert MeasureSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match="runs"):
        MeasureSettings(runs=1)
    with pytest.raises(ValueError, match="cv_threshold"):
        MeasureSettings(cv_threshold=math.nan)
    absurd: dict[str, Any] = {"runs": 10**30, "warmup_runs": 10**9, "retries": 1000, "warmup_seconds": 1e9}
    for field, value in absurd.items():
        with pytest.raises(ValueError, match=field):
            MeasureSettings(**{field: value})
    MeasureSettings(runs=10_000, warmup_runs=10_000, retries=10, warmup_seconds=60.0, cv_threshold=100.0)  # limits
    with pytest.raises(ValueError, match="unknown MeasureSettings field"):
        MeasureSettings.from_dict({"repeats": 3})


def test_measure_small_model(small_model: bytes, tmp_path: object) -> None:
    m = measure_onnx(small_model, get_target("cpu-ort"), FAST)
    assert m.input_shape == [1, 1, 28, 28]  # from the model's input, batch from the target
    assert 0 < m.median_ms <= m.p90_ms <= m.p95_ms
    assert m.mean_ms > 0 and m.cv >= 0 and m.runs == 10 and 1 <= m.attempts <= 3
    env = m.environment
    assert env["threads"] == 1 and env["provider"] == "CPUExecutionProvider"
    assert env["runtime_version"] and env["cpu_model"] and env["logical_cores"] >= 1 and env["python"]
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_measure_with_input_shape_batch_and_threads(small_model: bytes) -> None:
    target = Target("cpu-ort-b2", threads=2, batch_size=2)
    m = measure_onnx(small_model, target, FAST, input_shape=(1, 28, 28))
    assert m.input_shape == [2, 1, 28, 28] and m.environment["threads"] == 2
    with pytest.raises(ValueError, match="input_shape"):
        measure_onnx(small_model, target, FAST, input_shape=(28, 28))
    with pytest.raises(ValueError, match="contradicts"):
        measure_onnx(small_model, target, FAST, input_shape=(1, 32, 32))


def test_noisy_measurement_is_retried_and_flagged(small_model: bytes) -> None:
    m = measure_onnx(
        small_model, get_target("cpu-ort"), MeasureSettings(warmup_runs=1, runs=5, cv_threshold=0.0, retries=2)
    )
    assert m.noisy and m.attempts == 3


def test_a_batch_is_measured_again_only_when_its_reference_drifts(small_model: bytes) -> None:
    space = get_space(SMALL)
    models = [small_model, subnet_onnx(space, space.max_arch(28))]
    done: list[int] = []
    tolerant = dataclasses.replace(FAST, cv_threshold=100.0)  # 10,000%: no real drift is that large
    measured, drift = measure_batch(models, get_target("cpu-ort"), tolerant, lambda i, _n: done.append(i))
    assert [m.target for m in measured] == ["cpu-ort"] * 2 and measured[0].median_ms < measured[1].median_ms
    assert not drift.remeasured and not drift.flagged and done == [1, 2]
    assert drift.first_relative_change == drift.relative_change
    done.clear()
    strict = dataclasses.replace(FAST, cv_threshold=0.0)  # any difference between two real medians is drift
    measured, drift = measure_batch(models, get_target("cpu-ort"), strict, lambda i, _n: done.append(i))
    assert drift.remeasured and drift.flagged and done == [1, 2, 1, 2] and len(measured) == 2
    before, after = drift.reference_before_ms, drift.reference_after_ms
    assert drift.to_dict()["relative_change"] == pytest.approx((after - before) / before)
    with pytest.raises(ValueError, match="at least one model"):
        measure_batch([], get_target("cpu-ort"), FAST)


def test_measure_rejects_non_ort_targets(small_model: bytes) -> None:
    with pytest.raises(ValueError, match="onnxruntime target"):
        measure_onnx(small_model, get_target("cuda-torch"), FAST)


def test_measurement_rejects_bad_latencies() -> None:
    data = {"median_ms": -1.0, "p90_ms": 1.0, "p95_ms": 1.0, "mean_ms": 1.0, "cv": 0.0, "runs": 2, "attempts": 1}
    with pytest.raises(ValueError, match="median_ms"):
        Measurement(**data, noisy=False, target="cpu-ort", input_shape=[1])  # type: ignore[arg-type]


def test_measure_module_imports_no_torch() -> None:
    code = "import sys, predictors.latency.measure, predictors.latency; assert 'torch' not in sys.modules, 'torch'"
    code += "; assert 'onnxruntime' not in sys.modules, 'onnxruntime'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.cuda
def test_cuda_torch_measurement() -> None:
    import torch

    from nas.supernet import build_subnet
    from predictors.latency.torch_cuda import measure_torch_cuda

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    space = get_space(SMALL)
    m = measure_torch_cuda(build_subnet(space.backbone, space.max_arch()), (1, 32, 32), get_target("cuda-torch"), FAST)
    assert m.median_ms > 0 and "gpu" in m.environment
