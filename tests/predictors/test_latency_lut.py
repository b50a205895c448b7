"""Per-layer lookup tables: OFA's key grammar and YAML format, vectorised sums, building one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from nas.spaces import get_space
from predictors.latency import LookupTable, MeasureSettings, get_target, measure_onnx
from predictors.latency.keys import LayerSpec, arch_layers, table_layers
from predictors.latency.models import subnet_onnx

W12, W10, SMALL = "ofa_mbv3_d234_e346_k357_w1.2", "ofa_mbv3_d234_e346_k357_w1.0", "ofa_mbv3_d234_e346_k357_32px"

# Spec §10: the note10 breakdown of the w1.2 min subnet (k3, e3, d2) at 224, which sums to 17.769056 ms.
MIN_224 = {
    "Conv-input:224x224x3-output:112x112x24": 0.994418,
    "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0": 1.772802,
    "expanded_conv-input:112x112x24-output:56x56x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0": 2.467018,
    "expanded_conv-input:56x56x32-output:56x56x32-expand:96-kernel:3-stride:1-idskip:1-se:0-hs:0": 1.915782,
    "expanded_conv-input:56x56x32-output:28x28x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0": 1.078333,
    "expanded_conv-input:28x28x48-output:28x28x48-expand:144-kernel:3-stride:1-idskip:1-se:1-hs:0": 1.064827,
    "expanded_conv-input:28x28x48-output:14x14x96-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:1": 0.749939,
    "expanded_conv-input:14x14x96-output:14x14x96-expand:288-kernel:3-stride:1-idskip:1-se:0-hs:1": 0.893686,
    "expanded_conv-input:14x14x96-output:14x14x136-expand:288-kernel:3-stride:1-idskip:0-se:1-hs:1": 1.038846,
    "expanded_conv-input:14x14x136-output:14x14x136-expand:408-kernel:3-stride:1-idskip:1-se:1-hs:1": 1.634446,
    "expanded_conv-input:14x14x136-output:7x7x192-expand:408-kernel:3-stride:2-idskip:0-se:1-hs:1": 1.060472,
    "expanded_conv-input:7x7x192-output:7x7x192-expand:576-kernel:3-stride:1-idskip:1-se:1-hs:1": 0.956990,
    "Conv_1-input:7x7x192-output:7x7x1152": 0.694356,
    "AvgPool2D-input:7x7x1152-output:1x1x1152": 0.015271,
    "Conv_2-input:1x1x1152-output:1x1x1536": 0.762458,
    "Logits-input:1x1x1536-output:1000": 0.669412,
}


def write_ofa_yaml(path: Path, entries: dict[str, float]) -> Path:
    # OFA's layout: {key: {count, mean, std}}, one file per resolution.
    path.write_text(yaml.safe_dump({k: {"count": 50, "mean": v, "std": 0.01} for k, v in entries.items()}))
    return path


@pytest.fixture
def ofa_224(tmp_path: Path) -> Path:
    return write_ofa_yaml(tmp_path / "224_lookup_table.yaml", MIN_224)


def test_key_grammar_matches_ofa() -> None:
    space = get_space(W12)
    assert [layer.key for layer in arch_layers(space, space.min_arch(224))] == list(MIN_224)
    for key in MIN_224:
        assert LayerSpec.parse(key).key == key
    assert len(table_layers(space.backbone, [224])) == 96  # as in OFA's note10 files
    with pytest.raises(ValueError, match="grammar"):
        LayerSpec.parse("expanded_conv-input:7x7x192-output:7x7x192-expand:576-kernel:3")


def test_ofa_reference_arithmetic(ofa_224: Path) -> None:
    lut = LookupTable.from_ofa_yaml([ofa_224])
    assert lut.space.name == W12 and lut.resolutions == [224]
    space = get_space(W12)
    pred = lut.predict([space.min_arch(224)])
    assert isinstance(pred, np.ndarray) and pred.shape == (1,)
    assert pred[0] == pytest.approx(17.769056, abs=1e-6)


def test_missing_entry_is_named(ofa_224: Path) -> None:
    lut = LookupTable.from_ofa_yaml([ofa_224])
    space = get_space(W12)
    arch = space.min_arch(224)
    arch["ks"][0] = 5
    with pytest.raises(KeyError, match=r"expanded_conv-input:112x112x24-output:56x56x32-expand:72-kernel:5"):
        lut.predict([arch])
    with pytest.raises(KeyError, match=r"Conv-input:160x160x3-output:80x80x24.*no entries at 160"):
        lut.predict([space.min_arch(160)])


def test_ofa_yaml_errors(tmp_path: Path, ofa_224: Path) -> None:
    with pytest.raises(ValueError, match=r"not a layer of space ofa_mbv3_d234_e346_k357_w1\.0"):
        LookupTable.from_ofa_yaml([ofa_224], space=get_space(W10))
    with pytest.raises(ValueError, match=r"_lookup_table\.yaml"):
        LookupTable.from_ofa_yaml([write_ofa_yaml(tmp_path / "note10.yaml", MIN_224)])
    with pytest.raises(ValueError, match="resolution 100"):
        LookupTable.from_ofa_yaml([write_ofa_yaml(tmp_path / "100_lookup_table.yaml", MIN_224)])
    bad = tmp_path / "bad" / "224_lookup_table.yaml"
    bad.parent.mkdir()
    with pytest.raises(ValueError, match="finite and > 0"):
        LookupTable.from_ofa_yaml([write_ofa_yaml(bad, {**MIN_224, "Logits-input:1x1x1536-output:1000": -1.0})])


def test_ofa_yaml_and_json_roundtrip(tmp_path: Path, ofa_224: Path) -> None:
    lut = LookupTable.from_ofa_yaml([ofa_224])
    (path,) = lut.to_ofa_yaml(tmp_path / "out")
    assert path.name == "224_lookup_table.yaml"
    written = yaml.safe_load(path.read_text())
    assert written["Conv-input:224x224x3-output:112x112x24"] == {"count": 50, "mean": 0.994418, "std": 0.01}
    again = LookupTable.from_ofa_yaml([path])
    loaded = LookupTable.load(lut.save(tmp_path / "new" / "folder" / "t.json"))  # folders are created
    assert list((tmp_path / "new" / "folder").iterdir()) == [tmp_path / "new" / "folder" / "t.json"]  # no temp file
    arch = get_space(W12).min_arch(224)
    assert again.predict([arch])[0] == loaded.predict([arch])[0] == lut.predict([arch])[0]
    assert loaded.space == lut.space and loaded.stats == lut.stats


def random_table(space_name: str, seed: int = 0) -> LookupTable:
    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    entries = {}
    for r in space.resolutions:
        keys = table_layers(space.backbone, [r])
        entries[r] = {k: float(v) for k, v in zip(keys, rng.uniform(0.1, 2.0, len(keys)), strict=True)}
    return LookupTable(space, entries, target="synthetic")


def test_vectorised_sum_equals_per_layer_sum() -> None:
    lut = random_table(W10)
    space = lut.space
    archs = space.sample(1, 200)
    expected = [sum(lut.entries[a["r"]][layer.key] for layer in arch_layers(space, a)) for a in archs]
    np.testing.assert_allclose(lut.predict(archs), expected, rtol=1e-12)
    matrix = space.sample_matrix(2, 50_000)
    assert lut.predict_matrix(matrix).shape == (50_000,)
    small = space.restrict(kernel_sizes=[5, 7], resolutions=[160, 224])
    sub_archs = small.sample(3, 20)
    np.testing.assert_allclose(lut.predict_matrix(small.to_matrix(sub_archs), small), lut.predict(sub_archs))


def test_bad_entries_are_rejected() -> None:
    space = get_space(SMALL)
    with pytest.raises(ValueError, match="finite and > 0"):
        LookupTable(space, {32: {"Conv-input:32x32x1-output:16x16x16": float("nan")}})
    with pytest.raises(ValueError, match="resolution 224"):
        LookupTable(space, {224: {}})


@pytest.fixture(scope="module")
def built_small(tmp_path_factory: pytest.TempPathFactory) -> LookupTable:
    settings = MeasureSettings(warmup_runs=3, warmup_seconds=0.02, runs=15)
    done: list[int] = []
    lut = LookupTable.build(get_space(SMALL), "cpu-ort", resolutions=[32], settings=settings,
                            progress=lambda i, n, key: done.append(i))  # fmt: skip
    assert done[-1] == len(table_layers(lut.space.backbone, [32]))
    return LookupTable.load(lut.save(tmp_path_factory.mktemp("lut") / "small.json"))


def test_built_table_matches_end_to_end(built_small: LookupTable) -> None:
    space = built_small.space
    assert built_small.target == "cpu-ort" and built_small.resolutions == [32]
    assert built_small.environment["provider"] == "CPUExecutionProvider"
    some = next(iter(built_small.stats[32].values()))
    assert {"count", "std", "cv", "noisy"} <= set(some)
    archs = [space.min_arch(32), space.max_arch(32), *[dict(a, r=32) for a in space.sample(0, 2)]]
    settings = MeasureSettings(warmup_runs=5, warmup_seconds=0.05, runs=30)
    measured = np.array([measure_onnx(subnet_onnx(space, a), get_target("cpu-ort"), settings).median_ms for a in archs])
    ratio = built_small.predict(archs) / measured
    # A consistency check, not a timing test. Layers timed alone cost more than inside one graph, and
    # how much depends on the host: 0.9-1.24x on AVX-512 hosts, but 1.9-2.2x for the smallest subnet
    # (16 layers, 0.44 ms end to end) on an AVX2 host (2026-11-30), so the bound is 3x.
    assert np.all((ratio > 0.5) & (ratio < 3.0)), ratio
    assert built_small.predict(archs)[1] > built_small.predict(archs)[0]  # max subnet costs more than min
