"""The typed search request: objective grammar, default directions, constraints, and a round trip through JSON."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from predictors.search_spec import SearchSpec, latency_objective, latency_target


def errors(**fields: Any) -> list[tuple[str, str]]:
    """The (dotted location, message) of each error of a spec with these fields."""
    with pytest.raises(ValidationError) as caught:
        SearchSpec(**fields)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


def test_the_latency_grammar_and_its_alias() -> None:
    assert latency_objective("cpu-ort") == "latency:cpu-ort" and latency_target("latency:cpu-ort") == "cpu-ort"
    assert latency_target("macs") is None
    spec = SearchSpec(objectives=["accuracy", "latency"], targets=["cpu-ort"], constraints={"latency": 5})
    assert spec.objectives == ["accuracy", "latency:cpu-ort"] and spec.constraints == {"latency:cpu-ort": 5.0}
    assert spec.latency_targets == ["cpu-ort"]
    (where, message), *_ = errors(objectives=["latency"], targets=["a", "b"])  # the alias needs one target
    assert where == "objectives" and "latency:<one of ['a', 'b']>" in message
    assert errors(objectives=["latency:gpu9"], targets=["cpu-ort"])[0][0] == "objectives"
    assert errors(objectives=["macs", "macs"])[0][0] == "objectives"


def test_directions_default_per_objective_and_are_checked() -> None:
    spec = SearchSpec(objectives=["accuracy", "macs", "latency:t"], targets=["t"], directions={"macs": "max"})
    assert spec.directions == {"accuracy": "max", "macs": "max", "latency:t": "min"}
    assert errors(objectives=["macs"], directions={"macs": "up"})[0][0] == "directions.macs"
    assert errors(objectives=["macs"], directions={"flops": "min"})[0][0] == "directions"
    assert errors(objectives=["macs"], directions={"accuracy": "max"})[0][0] == "directions"  # not an objective


def test_constraints_name_objectives_and_hold_valid_bounds() -> None:
    spec = SearchSpec(objectives=["accuracy", "macs"], constraints={"accuracy": [0.5, None], "macs": 1e6})
    assert spec.constraints == {"accuracy": (0.5, None), "macs": 1e6}
    (where, message), *_ = errors(objectives=["macs"], constraints={"latency:gpu9": 1.0})
    assert where == "constraints" and "unknown objective 'latency:gpu9'" in message
    assert errors(objectives=["macs"], constraints={"params": 1.0})[0][0] == "constraints"  # not an objective
    assert errors(objectives=["macs"], constraints={"macs": [3, 1]})[0][0] == "constraints.macs"
    assert errors(objectives=["macs"], constraints={"macs": [None, None]})[0][0] == "constraints.macs"


def test_algorithm_budgets_and_measure_settings_are_checked() -> None:
    assert errors(objectives=["macs"], algorithm="simulated_annealing")[0][0] == "algorithm"
    assert errors(objectives=["macs"], budget=0)[0][0] == "budget"
    assert errors(objectives=["macs"], predictor_samples=5)[0][0] == "predictor_samples"
    assert "runs" in errors(objectives=["macs"], measure={"runs": 0})[0][1]
    assert errors(objectives=["macs"], colour="red")[0][0] == "colour"
    assert SearchSpec(objectives=["macs"]).measure["runs"] == 50  # the settings' defaults, written out


def test_a_spec_reads_back_unchanged_from_its_json() -> None:
    spec = SearchSpec(
        objectives=["accuracy", "latency"], targets=["cpu-ort"], constraints={"latency": 8, "accuracy": [0.5, None]},
        algorithm="nsga2", budget=300, seed=7, predictor_samples=12, export_limit=3, measure={"runs": 3},
    )  # fmt: skip
    stored = spec.model_dump(mode="json")
    assert stored["constraints"] == {"latency:cpu-ort": 8.0, "accuracy": [0.5, None]}
    again = SearchSpec.model_validate(stored)
    assert again == spec and again.model_dump(mode="json") == stored
