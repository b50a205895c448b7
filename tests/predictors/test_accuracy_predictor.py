"""Accuracy predictors: OFA's encoding and weights, MLP/GBM on real supernet evaluations, data sets, validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from nas.cost import macs
from nas.search import search
from nas.space import Arch, SearchSpace
from nas.spaces import get_space
from nas.train import TrainConfig, TrainRun, evaluate, train_supernet
from predictors.accuracy import AccuracyPredictor, list_kinds
from predictors.accuracy_data import (
    EvaluationCache,
    build_dataset,
    open_cache,
    sample_spread_over_macs,
    supernet_fingerprint,
)
from predictors.accuracy_ofa import encode_ofa

Dataset = tuple[list[Arch], np.ndarray, Path]
MIXED = {"ks": [3, 5, 7, 3] * 5, "e": [6, 4, 3, 6] * 5, "d": [2, 3, 4, 3, 2], "r": 192}
SPEC_NONZERO = [0, 4, 12, 16, 20, 24, 28, 32, 33, 36, 40, 44, 48, 52, 62, 64, 74, 76, 78, 86, 88, 90, 95, 98, 100,
                102, 110, 112, 125]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def w12() -> SearchSpace:
    return get_space("ofa_mbv3_d234_e346_k357_w1.2")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TrainRun:
    """One short sandwich epoch on the bundled digits (real training, ~10 s)."""
    config = TrainConfig.model_validate(
        {"dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 320, "num_random": 1, "bn_recal_images": 64}
    )
    return train_supernet(config, tmp_path_factory.mktemp("supernet"))


@pytest.fixture(scope="module")
def dataset(run: TrainRun, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    archs = sample_spread_over_macs(run.supernet.space, 24, rng=0)
    cache = tmp_path_factory.mktemp("data") / "val.json"
    archs, acc = build_dataset(run.supernet, archs, cache=cache, split="val", recal_images=64)
    return archs, acc, cache


def test_ofa_encoding_matches_the_spec_reference(w12: SearchSpace) -> None:
    features = encode_ofa(w12, [MIXED])
    assert features.shape == (1, 128)
    assert np.flatnonzero(features[0]).tolist() == SPEC_NONZERO


def test_ofa_encoding_rejects_spaces_it_cannot_describe() -> None:
    with pytest.raises(ValueError, match=r"resolutions 112\.\.239"):
        AccuracyPredictor(get_space("ofa_mbv3_d234_e346_k357_32px"), encoding="ofa")


def ofa_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(128, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 400),
                         nn.ReLU(), nn.Linear(400, 1))  # fmt: skip


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_ofa_published_weights_load_and_predict_like_torch(w12: SearchSpace, tmp_path: Path, suffix: str) -> None:
    net = ofa_net()
    path = tmp_path / f"acc_predictor{suffix}"
    if suffix == ".pth":
        torch.save(net.state_dict(), path)
    else:
        save_file(net.state_dict(), str(path))
    pred = AccuracyPredictor.from_ofa(path, w12)
    archs = [MIXED, *w12.sample(0, 20)]
    with torch.no_grad():
        expected = net(torch.as_tensor(encode_ofa(w12, archs))).squeeze(1).numpy()
    np.testing.assert_allclose(pred.predict(archs), expected, rtol=1e-5, atol=1e-6)


def test_ofa_weights_with_other_keys_are_refused(w12: SearchSpace, tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(1, 128)}, str(path))
    with pytest.raises(ValueError, match="not an OFA accuracy predictor"):
        AccuracyPredictor.from_ofa(path, w12)


def test_spread_over_macs_covers_the_range() -> None:
    space = get_space("ofa_mbv3_d234_e346_k357_32px")
    archs = sample_spread_over_macs(space, 30, rng=1)
    m = np.sort(macs(space, archs))
    pool = macs(space, space.sample(2, 5000))
    assert len({space.key(a) for a in archs}) == 30
    assert m[0] <= np.quantile(pool, 0.05) and m[-1] >= np.quantile(pool, 0.95)


@pytest.mark.parametrize("kind", ["mlp", "gbm"])
def test_predictors_learn_a_learnable_target(kind: str) -> None:
    """A target that is a known function of the subnet: the predictor must rank held-out subnets well."""
    space = get_space("ofa_mbv3_d234_e346_k357_32px")
    archs = space.sample(0, 500)
    x = space.encode(archs)
    w = np.random.default_rng(3).normal(size=x.shape[1])
    y = 0.7 + 0.01 * (x @ w)
    options: dict[str, Any] = {"epochs": 30} if kind == "mlp" else {"n_estimators": 300}
    pred = AccuracyPredictor(space, kind, **options).fit(archs[:400], y[:400])
    score = pred.evaluate(archs[400:], y[400:])
    assert (
        score.kendall_tau is not None
        and score.kendall_tau > {"mlp": 0.8, "gbm": 0.6}[kind]
        and score.rmse < 0.7 * y.std()
        and score.n == 100
    )


def test_kendall_tau_is_none_where_there_is_no_ranking_to_compare() -> None:
    """Held-out subnets of equal accuracy: tau is undefined (scipy's NaN would not survive JSON storage)."""
    space = get_space("ofa_mbv3_d234_e346_k357_32px")
    archs = space.sample(0, 12)
    pred = AccuracyPredictor(space, "gbm").fit(archs[:10], np.linspace(0.8, 0.9, 10))
    score = pred.evaluate(archs[10:], [0.85, 0.85])
    assert score.kendall_tau is None and score.rmse >= 0 and score.n == 2


@pytest.mark.parametrize("kind", ["mlp", "gbm"])
def test_fit_on_real_supernet_evaluations_save_and_load(
    dataset: Dataset, run: TrainRun, tmp_path: Path, kind: str
) -> None:
    archs, acc, _ = dataset
    assert ((acc >= 0) & (acc <= 1)).all() and acc.std() > 0
    space = run.supernet.space
    options: dict[str, Any] = {"epochs": 20} if kind == "mlp" else {}
    pred = AccuracyPredictor(space, kind, **options).fit(archs[:18], acc[:18])
    score = pred.evaluate(archs[18:], acc[18:])
    assert np.isfinite(score.rmse) and score.kendall_tau is not None and -1 <= score.kendall_tau <= 1
    pred.save(tmp_path / "p")
    assert not list((tmp_path / "p").glob("*.pkl")) and (tmp_path / "p" / "predictor.json").is_file()
    loaded = AccuracyPredictor.load(tmp_path / "p")
    assert loaded.space == space
    np.testing.assert_array_equal(loaded.predict(archs), pred.predict(archs))
    matrix = space.sample_matrix(0, 50_000)
    fast = loaded.predict_matrix(matrix)
    assert fast.shape == (50_000,) and np.isfinite(fast).all()
    np.testing.assert_allclose(fast[:20], loaded.predict(space.from_matrix(matrix[:20])))


def test_dataset_cache_is_reused(dataset: Dataset, run: TrainRun) -> None:
    archs, _, cache = dataset
    doc = json.loads(cache.read_text())
    assert len(doc["records"]) == len({run.supernet.space.key(a) for a in archs}) and doc["split"] == "val"
    doc["records"][0]["acc"] = 0.123  # a changed cached value proves the cache is read, not re-measured
    cache.write_text(json.dumps(doc))
    again_archs, again = build_dataset(run.supernet, archs, cache=cache, split="val")
    index = [run.supernet.space.key(a) for a in again_archs].index(doc["records"][0]["key"])
    assert again[index] == 0.123
    opened = open_cache(cache, run.supernet, "val")  # an open cache is used as it is
    assert build_dataset(run.supernet, archs, cache=opened, split="val")[1][index] == 0.123
    with pytest.raises(ValueError, match="split 'val'"):
        build_dataset(run.supernet, archs, cache=cache, split="test")
    with pytest.raises(ValueError, match="holds split 'val', not 'test'"):
        build_dataset(run.supernet, archs, cache=opened, split="test")


def test_dataset_cache_refuses_another_supernets_measurements(dataset: Dataset, run: TrainRun) -> None:
    archs, _, cache = dataset
    before = cache.read_bytes()
    retrained = copy.deepcopy(run.supernet)
    with torch.no_grad():
        next(retrained.parameters()).add_(1e-3)
    # BN statistics are recalibrated per subnet, so they must not change the fingerprint
    recalibrated = copy.deepcopy(run.supernet)
    next(b for b in recalibrated.buffers() if b.is_floating_point()).add_(1.0)
    assert supernet_fingerprint(recalibrated) == supernet_fingerprint(run.supernet) != supernet_fingerprint(retrained)
    with pytest.raises(ValueError, match=r"another supernet .*its own cache file"):
        build_dataset(retrained, archs, cache=cache, split="val", recal_images=64)
    with pytest.raises(ValueError, match="another supernet; give this one its own cache"):
        build_dataset(retrained, archs, cache=open_cache(cache, run.supernet, "val"), split="val", recal_images=64)
    assert cache.read_bytes() == before  # refused before anything was measured or written
    old = json.loads(before)
    old["version"] = 1
    del old["supernet"]
    legacy = cache.with_name("legacy.json")
    legacy.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="holds version 1 on split 'val'; expected version 2"):
        open_cache(legacy, run.supernet, "val")


def test_caches_merge_without_losing_records_and_refuse_another_supernet() -> None:
    space = get_space("ofa_mbv3_d234_e346_k357_32px")
    a, b, c = space.sample(np.random.default_rng(0), 3)
    mine, theirs = EvaluationCache(None, space, "val", "f1"), EvaluationCache(None, space, "val", "f1")
    mine.put(a, 0.5)
    mine.put(b, 0.6)
    theirs.put(b, 0.9)  # the same subnet measured by both: the record already held is kept
    theirs.put(c, 0.7)
    mine.merge(theirs)
    assert mine.lookup([a, b, c]).tolist() == [0.5, 0.6, 0.7] and len(theirs.records) == 2
    added = mine.difference(theirs)
    assert added.path is None and list(added.records) == [space.key(a)] and added.supernet == "f1"
    assert added.to_dict() == {"version": 2, "split": "val", "supernet": "f1", "records": [added.records[space.key(a)]]}
    for split, fingerprint in (("test", "f1"), ("val", "f2")):
        with pytest.raises(ValueError, match="cannot merge"):
            mine.merge(EvaluationCache(None, space, split, fingerprint))


def test_search_with_the_predictor_then_measure_the_front_on_the_test_split(dataset: Dataset, run: TrainRun) -> None:
    archs, acc, _ = dataset
    space = run.supernet.space
    pred = AccuracyPredictor(space, "gbm", n_estimators=50).fit(archs, acc)

    def mmacs(batch: list[Arch]) -> np.ndarray:
        return macs(space, batch) / 1e6

    bound = float(np.median(mmacs(archs)))
    # Two objectives, but a narrow MACs window keeps the front (and the real evaluations) small.
    objectives: dict[str, Any] = {"acc": pred, "mmacs": mmacs}
    window = {"mmacs": (bound * 0.95, bound)}
    result = search(space, objectives, {"acc": "max"}, window, algorithm="evolution", budget=500, seed=0)
    assert len(result.pareto) > 0
    for arch, values in result.pareto:
        assert set(values) == {"acc", "mmacs"} and bound * 0.95 <= values["mmacs"] <= bound
        assert 0.0 <= evaluate(run.supernet, arch, "test", recal_images=64).top1 <= 1.0


def test_bad_predictor_input_is_a_clear_error() -> None:
    space = get_space("ofa_mbv3_d234_e346_k357_32px")
    assert list_kinds() == ["gbm", "mlp"]
    with pytest.raises(KeyError, match="registered: gbm, mlp"):
        AccuracyPredictor(space, "svm")
    with pytest.raises(ValueError, match="bad option"):
        AccuracyPredictor(space, "mlp", depth=3)
    with pytest.raises(ValueError, match="mlp option hidden"):
        AccuracyPredictor(space, "mlp", hidden=0)
    with pytest.raises(ValueError, match="unknown encoding"):
        AccuracyPredictor(space, encoding="onehot")
    pred = AccuracyPredictor(space)
    with pytest.raises(RuntimeError, match="not fitted"):
        pred.predict(space.sample(0, 2))
    with pytest.raises(ValueError, match="3 archs but 2 accuracies"):
        pred.fit(space.sample(0, 3), [0.1, 0.2])
