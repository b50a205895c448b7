"""Exact ranges of additive objectives, checked against every subnet of a small space."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from nas.search import CostObjective, Problem
from nas.search.feasibility import additive_minimum, additive_range, infeasible_reason
from nas.search.problem import Bound
from nas.space import IntMatrix, SearchSpace
from nas.spaces import get_space
from predictors.latency import LookupTable
from predictors.latency.keys import table_layers


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    """2 kernel sizes, depth 2 or 3 per stage, 2 resolutions: 2 x 12^5 = 497,664 subnets."""
    return get_space(
        "ofa_mbv3_d234_e346_k357_32px", kernel_sizes=[3, 5], expand_ratios=[3], depths=[2, 3], resolutions=[24, 32]
    )


@pytest.fixture(scope="module")
def noisy_table(space: SearchSpace) -> LookupTable:
    """A table whose entries do not grow with the kernel size (as noise can make a measured one)."""
    rng = np.random.default_rng(0)
    return LookupTable(
        space,
        {
            r: {key: float(rng.uniform(0.01, 1.0)) for key in table_layers(space.backbone, [r], [3, 5], [3])}
            for r in space.resolutions
        },
    )


def every_subnet(space: SearchSpace) -> Iterator[IntMatrix]:
    """Every canonical choice-index row of the space, in chunks (one per resolution and first stage)."""
    stage_options = [
        (d_index, kernels + (0,) * (space.max_depth - d))
        for d_index, d in enumerate(space.depths)
        for kernels in itertools.product(range(len(space.kernel_sizes)), repeat=d)
    ]
    n_cols = 2 * space.n_blocks + space.n_stages + 1
    for r, first in itertools.product(range(len(space.resolutions)), stage_options):
        rest = list(itertools.product(stage_options, repeat=space.n_stages - 1))
        rows = np.zeros((len(rest), n_cols), dtype=np.int64)
        for i, stages in enumerate(rest):
            for s, (d_index, kernels) in enumerate((first, *stages)):
                rows[i, s * space.max_depth : (s + 1) * space.max_depth] = kernels
                rows[i, 2 * space.n_blocks + s] = d_index
        rows[:, -1] = r
        yield rows


@pytest.fixture(scope="module")
def brute_force(space: SearchSpace, noisy_table: LookupTable) -> dict[str, tuple[float, float]]:
    """(min, max) of the table, MACs and parameters over every subnet."""
    objectives: dict[str, LookupTable | CostObjective] = {
        "table": noisy_table,
        "macs": CostObjective(space, "macs"),
        "params": CostObjective(space, "params"),
    }
    values: dict[str, list[np.ndarray]] = {name: [] for name in objectives}
    for rows in every_subnet(space):
        for name, objective in objectives.items():
            values[name].append(objective.predict_matrix(rows))
    return {
        name: (float(np.min(v)), float(np.max(v))) for name, v in ((n, np.concatenate(v)) for n, v in values.items())
    }


def test_the_exact_range_equals_the_brute_force_range(
    space: SearchSpace, noisy_table: LookupTable, brute_force: dict[str, tuple[float, float]]
) -> None:
    for name, objective in (
        ("table", noisy_table),
        ("macs", CostObjective(space, "macs")),
        ("params", CostObjective(space, "params", scale=1e6)),
    ):
        scale = 1e6 if name == "params" else 1.0
        low, high = brute_force[name]
        assert additive_range(space, objective) == pytest.approx((low / scale, high / scale), rel=1e-12)
        value, row = additive_minimum(space, *objective.additive_terms(space))
        assert objective.predict_matrix(row)[0] == pytest.approx(value, rel=1e-12)  # a subnet that has it
    # the space's smallest subnet is not the fastest under a noisy table: only the exact minimum proves a bound
    assert noisy_table.predict([space.min_arch()])[0] > brute_force["table"][0] * 1.01


def problem(space: SearchSpace, objective: Any, bound: Bound, direction: str = "min") -> Problem:
    """One objective, ``lat``, under one bound."""
    return Problem.build(space, {"lat": objective}, {"lat": direction}, {"lat": bound})


def test_infeasible_reason_names_the_bound_and_the_reachable_value(
    space: SearchSpace, noisy_table: LookupTable
) -> None:
    low, high = additive_range(space, noisy_table) or (0.0, 0.0)

    def reason(bound: Bound, direction: str = "min") -> str | None:
        return infeasible_reason(problem(space, noisy_table, bound, direction))

    assert (
        reason(low * 0.999) == f"no subnet can meet lat <= {low * 0.999:g}: the smallest lat in the space is {low:.4g}"
    )
    assert reason(low) is None and reason((None, high)) is None
    assert reason((high * 1.001, None)) == (
        f"no subnet can meet lat >= {high * 1.001:g}: the largest lat in the space is {high:.4g}"
    )
    assert reason(high * 1.001, "max") is not None and reason(high, "max") is None
    plain = problem(space, lambda archs: noisy_table.predict(archs), 1e-9)
    assert infeasible_reason(plain) is None  # not additive: nothing is proven


def test_a_table_without_an_entry_proves_nothing(space: SearchSpace, noisy_table: LookupTable) -> None:
    entries = {r: dict(e) for r, e in noisy_table.entries.items()}
    del entries[32]
    partial = LookupTable(space, entries)
    assert additive_range(space, partial) is None
    assert infeasible_reason(problem(space, partial, 1e-9)) is None
