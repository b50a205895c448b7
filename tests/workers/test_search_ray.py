"""Search and predictor data on a real local Ray: Ray Tune's OptunaSearch, parallel supernet evaluations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nas.cost import macs
from nas.spaces import get_space
from nas.train import TrainConfig, train_supernet

ray = pytest.importorskip("ray")


def test_optuna_through_ray_tune_honours_constraints(local_ray: None, tmp_path: Path) -> None:
    from workers.ray_tasks.search import search_on_ray_tune

    space = get_space("ofa_mbv3_d234_e346_k357_32px", kernel_sizes=[3, 5], expand_ratios=[3], depths=[2])

    def mmacs(archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return macs(space, archs) / 1e6

    def size(archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return np.array([sum(a["ks"]) + a["r"] for a in archs], dtype=float)

    bound = float(np.median(mmacs(space.sample(0, 200))))
    result = search_on_ray_tune(
        space, {"size": size, "mmacs": mmacs}, {"size": "max"}, {"mmacs": bound}, budget=8, seed=0,
        sampler="tpe", max_concurrent=2, storage_path=tmp_path,
    )  # fmt: skip
    assert result.n_evaluations == 8 and result.algorithm == "optuna-ray"
    np.testing.assert_allclose(np.asarray(result.values[:, 1]), mmacs(space.from_matrix(result.matrix)))
    assert all(v["mmacs"] <= bound for _, v in result.pareto)
    assert result.feasible.any() == bool(result.pareto)


@pytest.mark.usefixtures("one_torch_thread")
def test_accuracy_dataset_as_parallel_ray_tasks(local_ray: None, tmp_path: Path) -> None:
    from nas.train import evaluate
    from predictors.accuracy_data import EvaluationCache, sample_spread_over_macs
    from workers.ray_tasks.search import build_dataset_on_ray

    config = TrainConfig.model_validate(
        {"dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 128, "num_random": 1, "bn_recal_images": 64}
    )
    run = train_supernet(config, tmp_path / "run")
    archs = sample_spread_over_macs(run.supernet.space, 4, rng=0)
    cache = tmp_path / "val.json"
    saved: list[int] = []
    real_save = EvaluationCache.save

    def counting_save(self: EvaluationCache) -> None:  # records how many subnets each write holds
        real_save(self)
        saved.append(len(self.records))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EvaluationCache, "save", counting_save)
        got_archs, acc = build_dataset_on_ray(tmp_path / "run", archs, cache=cache, split="val", tasks=2, save_every=2)
    assert cache.is_file() and len(acc) == 4
    assert saved == [2, 4]  # written after each round, so an interrupted build keeps its measurements
    expected = [evaluate(run.supernet, a, "val").top1 for a in got_archs[:2]]
    np.testing.assert_allclose(acc[:2], expected)
