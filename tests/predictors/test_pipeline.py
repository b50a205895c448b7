"""`run_search` from Python on a tiny trained supernet: every shown accuracy is its exported bundle's."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.bundle_eval import score_bundle
from nas.export import load_bundle
from nas.train import TrainConfig, TrainRun, train_supernet
from nas.train.evaluate import data_for
from predictors.pipeline import PREDICTOR_KIND, run_search
from predictors.search_spec import SearchSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 64, "num_random": 1, "bn_recal_images": 64}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TrainRun:
    """One short sandwich epoch on 64 of the bundled digits."""
    return train_supernet(TrainConfig.model_validate(TINY), tmp_path_factory.mktemp("supernet"))


def test_run_search_exports_the_front_and_validates_it_on_the_exported_files(run: TrainRun, tmp_path: Path) -> None:
    spec = SearchSpec(objectives=["accuracy", "macs"], algorithm="random", budget=40, predictor_samples=10,
                      export_limit=2)  # fmt: skip
    front = run_search(run.supernet, spec, out_dir=tmp_path / "first")
    assert front.reason is None and front.n_evaluations == 40 and front.hypervolume > 0
    assert front.predictor is not None and front.predictor.kind == PREDICTOR_KIND
    assert front.predictor.samples == front.predictor.evaluated_now == 10
    assert front.measured is not None and len(front.measured.records) == 10
    assert 1 <= len(front.members) <= 2 and front.drift == {} and front.built_tables == {}
    test = data_for(run.supernet)[1]["test"]
    meta = run.supernet.metadata
    for member in front.members:
        bundle_meta = load_bundle(member.bundle).meta
        assert bundle_meta["arch"] == member.arch and bundle_meta["class_names"] == meta["classes"]
        assert (bundle_meta["input"]["mean"], bundle_meta["input"]["std"]) == (meta["mean"], meta["std"])
        assert member.validated["accuracy"] == score_bundle(member.bundle, test.images, test.labels).top1
        assert member.sources == {"accuracy": "bundle_onnx_test"}
        assert member.validated["macs"] == member.predicted["macs"]  # exact already
    again = run_search(run.supernet, spec, out_dir=tmp_path / "again", evaluations=front.measured)
    assert again.predictor is not None and again.predictor.evaluated_now == 0 and again.measured is None


def test_run_search_stops_before_the_predictor_on_a_constraint_no_subnet_meets(run: TrainRun, tmp_path: Path) -> None:
    spec = SearchSpec(objectives=["accuracy", "macs"], constraints={"macs": 1.0}, budget=40, predictor_samples=10)
    front = run_search(run.supernet, spec, out_dir=tmp_path)
    assert front.members == [] and front.predictor is None and front.n_evaluations == 0
    assert front.reason is not None and front.reason.startswith("no subnet can meet macs <= 1")


def test_a_target_without_a_table_must_be_measurable_here(run: TrainRun, tmp_path: Path) -> None:
    spec = SearchSpec(objectives=["macs", "latency"], targets=["far-away"], budget=10)
    with pytest.raises(ValueError, match="far-away"):
        run_search(run.supernet, spec, out_dir=tmp_path)
