"""Learned latency predictor: fit / predict / evaluate / save / load / suggest; per-operator costs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nas.backbone import se_channels
from nas.cost import macs
from nas.space import Arch, SearchSpace
from nas.spaces import get_space
from predictors.latency import LearnedLatencyPredictor, LookupTable, latency_metrics
from predictors.latency.keys import LayerSpec, table_layers
from predictors.latency.learned import PREDICTOR_FORMAT, block_ops

SMALL = "ofa_mbv3_d234_e346_k357_32px"
FORMAT_1 = Path(__file__).parents[1] / "data" / "latency_predictor_format1.json"


def layer_ms(layer: LayerSpec) -> float:
    """A plausible CPU cost model: MACs at a kind-dependent speed plus a fixed overhead per layer."""
    out = layer.out_size**2
    if layer.kind == "expanded_conv":
        pw = layer.in_ch * layer.mid * layer.in_size**2 * (layer.mid != layer.in_ch) + layer.mid * layer.out_ch * out
        dw = layer.mid * layer.kernel**2 * out
        return 0.01 + pw / 4e8 + dw / (1e8 if layer.kernel == 7 else 1.5e8) + 0.004 * layer.se
    return 0.01 + layer.in_ch * layer.out_ch * out * (9 if layer.kind == "Conv" else 1) / 4e8


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return get_space(SMALL)


@pytest.fixture(scope="module")
def truth(space: SearchSpace) -> LookupTable:
    entries = {
        r: {k: layer_ms(layer) for k, layer in table_layers(space.backbone, [r]).items()} for r in space.resolutions
    }
    return LookupTable(space, entries, target="synthetic")


def samples(
    space: SearchSpace, truth: LookupTable, n: int, seed: int, noise: float = 0.02
) -> tuple[list[Arch], np.ndarray]:
    archs = space.sample(seed, n)
    rng = np.random.default_rng(seed + 100)
    return archs, truth.predict(archs) * (1 + noise * rng.standard_normal(n))


def operators(space: SearchSpace, arch: Arch) -> list[tuple[str, int, int]]:
    """(kind, kernel size, output elements) of every operator the subnet's elastic blocks run, in order."""
    b, ops = space.backbone, []
    for spec, (fin, fout) in zip(b.blocks, b.block_sizes(arch["r"]), strict=True):
        if spec.position >= arch["d"][spec.stage]:
            continue
        k, mid = arch["ks"][spec.index], spec.mid_channels(arch["e"][spec.index])
        ops += [
            ("conv", 1, mid * fin**2),
            ("act", 1, mid * fin**2),
            ("dw", k, mid * fout**2),
            ("act", 1, mid * fout**2),
        ]
        if spec.use_se:
            hidden = se_channels(mid)
            ops += [("mean", 1, mid * fout), ("mean", 1, mid), ("conv", 1, hidden), ("act", 1, hidden)]
            ops += [("conv", 1, mid), ("act", 1, mid), ("mul", 1, mid * fout**2)]
        ops.append(("conv", 1, spec.out_channels * fout**2))
        if spec.has_shortcut:
            ops.append(("add", 1, spec.out_channels * fout**2))
    return ops


def test_metrics_by_hand() -> None:
    m = latency_metrics([1.04, 1.2, 0.5], [1.0, 1.0, 1.0])
    assert m.n == 3 and m.mape == pytest.approx((4 + 20 + 50) / 3)
    assert m.within_5 == pytest.approx(1 / 3) and m.within_10 == pytest.approx(1 / 3)
    assert latency_metrics([1, 2, 3], [2, 4, 6]).kendall_tau == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 predictions for 3"):
        latency_metrics([1, 2], [1, 2, 3])


def test_fit_without_table(space: SearchSpace, truth: LookupTable) -> None:
    archs, ms = samples(space, truth, 300, 0)
    lat = LearnedLatencyPredictor(space).fit(archs[:150], ms[:150])
    m = lat.evaluate(archs[150:], ms[150:])
    assert m.within_10 >= 0.95 and m.kendall_tau > 0.8, m
    # The baseline it must beat: latency proportional to MACs.
    m_macs = macs(space, archs).astype(float)
    baseline = m_macs[150:] * (ms[:150] / m_macs[:150]).mean()
    assert latency_metrics(baseline, ms[150:]).within_10 < m.within_10


def test_fit_with_table_small_sample(space: SearchSpace, truth: LookupTable) -> None:
    rng = np.random.default_rng(5)
    skewed = LookupTable(
        space, {r: {k: v * rng.uniform(0.8, 1.25) for k, v in t.items()} for r, t in truth.entries.items()}
    )
    archs, ms = samples(space, truth, 140, 1)
    lat = LearnedLatencyPredictor(space, skewed, min_gbm_samples=1000).fit(archs[:40], ms[:40])  # linear part only
    assert lat.evaluate(archs[40:], ms[40:]).within_10 >= 0.95


def test_save_load_without_pickle(space: SearchSpace, truth: LookupTable, tmp_path: Path) -> None:
    archs, ms = samples(space, truth, 120, 2)
    lat = LearnedLatencyPredictor(space, truth).fit(archs[:100], ms[:100])
    path = lat.save(tmp_path / "new" / "lat.json")  # the folder is created
    data = json.loads(path.read_text())
    assert data["gbm"].startswith("tree") and data["table"]["target"] == "synthetic"
    again = LearnedLatencyPredictor.load(path)
    np.testing.assert_allclose(again.predict(archs[100:]), lat.predict(archs[100:]), rtol=1e-12)
    np.testing.assert_allclose(lat.predict_matrix(space.to_matrix(archs[100:])), lat.predict(archs[100:]))


def test_suggest_prefers_unfamiliar_archs(space: SearchSpace, truth: LookupTable) -> None:
    # Trained on small-resolution subnets only: the model is least sure about the other resolutions.
    archs = space.sample(3, 60)
    seen = [a for a in archs if a["r"] == 24]
    lat = LearnedLatencyPredictor(space, ensemble=16).fit(seen, truth.predict(seen))
    pool = space.sample(4, 60)
    pool = [*pool, pool[0]]  # a duplicate is suggested at most once
    picked = lat.suggest(pool, 10)
    assert len(picked) == len(set(picked)) == 10 and not {0, 60} <= set(picked)
    assert np.mean([pool[i]["r"] != 24 for i in picked]) > np.mean([a["r"] != 24 for a in pool])
    with pytest.raises(ValueError, match="n must be"):
        lat.suggest(pool, 0)


def test_bad_input(space: SearchSpace) -> None:
    archs = space.sample(0, 6)
    lat = LearnedLatencyPredictor(space)
    with pytest.raises(RuntimeError, match="not fitted"):
        lat.predict(archs)
    with pytest.raises(ValueError, match=r"ms\[1\]"):
        lat.fit(archs, [1.0, float("inf"), 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="6 archs but 5"):
        lat.fit(archs, [1.0] * 5)
    with pytest.raises(ValueError, match="at least 5"):
        lat.fit(archs[:3], [1.0] * 3)


def test_block_ops_are_the_exported_graph_nodes(space: SearchSpace) -> None:
    import onnx

    from predictors.latency.models import subnet_onnx

    archs = [space.min_arch(24), space.max_arch(32), *space.sample(8, 2)]
    counted = [
        sum(block_ops(s, a["e"][s.index]) for s in space.backbone.blocks if s.position < a["d"][s.stage]) for a in archs
    ]
    assert counted == [len(operators(space, a)) for a in archs]
    graphs = [onnx.load_from_string(subnet_onnx(space, a)).graph for a in archs]
    nodes = [sum(n.op_type != "Identity" for n in g.node) for g in graphs]  # Identity: weights shared by export
    assert len({n - c for n, c in zip(nodes, counted, strict=True)}) == 1  # the fixed layers' nodes
    assert counted[0] < counted[1]


@pytest.mark.parametrize("cost", ["launch", "launch_kernel_memory"])
def test_fits_per_operator_costs(space: SearchSpace, cost: str) -> None:
    """Batch-1 latency on a GPU: a launch per operator (``launch``), plus a second launch for a depthwise conv
    above 3x3 and memory traffic in proportion to each output (``launch_kernel_memory``); compute is free.

    Format 1's features (per stage: MACs, depthwise MACs, mid-channel volume, block count) fit ``launch``
    exactly too, since every block of a stage runs the same operators, but left a systematic ~0.3%
    error on the other; format 2's operator count, kernel-size counts and I/O volumes fit both all but exactly.
    """

    def ms(arch: Arch) -> float:
        ops = operators(space, arch)
        if cost == "launch":
            return 0.05 + 0.01 * len(ops)
        return 0.05 + sum(0.005 * (1 + (kind == "dw" and k > 3)) + 2e-6 * volume for kind, k, volume in ops)

    archs = space.sample(0, 300)
    y = np.array([ms(a) for a in archs])
    m = LearnedLatencyPredictor(space).fit(archs[:100], y[:100]).evaluate(archs[100:], y[100:])
    assert m.mape < 0.1 and m.within_5 == 1.0, m


def test_loads_format_1(tmp_path: Path) -> None:
    doc = json.loads(FORMAT_1.read_text())  # saved by the predictor before the per-operator features
    lat = LearnedLatencyPredictor.from_dict(doc["predictor"])
    np.testing.assert_allclose(lat.predict(doc["archs"]), doc["predicted"], rtol=1e-12)
    assert len(lat.suggest(doc["archs"], 2)) == 2
    path = lat.save(tmp_path / "lat.json")
    assert json.loads(path.read_text())["format"] == PREDICTOR_FORMAT == 2
    np.testing.assert_allclose(LearnedLatencyPredictor.load(path).predict(doc["archs"]), doc["predicted"], rtol=1e-12)
    with pytest.raises(ValueError, match="format=3"):
        LearnedLatencyPredictor.from_dict({**doc["predictor"], "format": 3})
