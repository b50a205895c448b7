"""Every search algorithm on a small space whose Pareto front is known by brute force."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from nas.cost import macs_matrix
from nas.search import SearchProgress, list_algorithms, search
from nas.search.pareto import hypervolume, pareto_mask
from nas.space import IntMatrix, SearchSpace
from nas.spaces import get_space

ALGORITHMS = ["evolution", "nsga2", "random", "linas", "optuna"]
BUDGET = {"evolution": 600, "nsga2": 600, "random": 600, "linas": 80, "optuna": 300}


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    """2 kernel sizes on 10 active slots x 2 resolutions = 2,048 subnets."""
    return get_space(
        "ofa_mbv3_d234_e346_k357_32px", kernel_sizes=[3, 5], expand_ratios=[3], depths=[2], resolutions=[24, 32]
    )


def all_rows(space: SearchSpace) -> IntMatrix:
    active = [s * space.max_depth + p for s in range(space.n_stages) for p in range(2)]
    rows = []
    for r in range(len(space.resolutions)):
        for bits in itertools.product([0, 1], repeat=len(active)):
            row = np.zeros(2 * space.n_blocks + space.n_stages + 1, dtype=np.int64)
            row[active] = bits
            row[-1] = r
            rows.append(row)
    return space.canonicalize_matrix(np.array(rows))


class MMACs:
    """MACs in millions, with the matrix fast path; counts the rows it scores."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.rows = 0

    def predict_matrix(self, matrix: IntMatrix) -> np.ndarray:
        self.rows += len(matrix)
        return macs_matrix(self.space, matrix) / 1e6

    def __call__(self, archs: list[Any]) -> np.ndarray:
        raise AssertionError("the search should use predict_matrix")


def toy_acc(space: SearchSpace):  # type: ignore[no-untyped-def]
    """A separable 'accuracy' on arch dicts: larger kernels help, unevenly per slot; the resolution helps."""
    weights = np.random.default_rng(7).uniform(0.5, 1.5, space.n_blocks)

    def acc(archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        ks = np.array([a["ks"] for a in archs], dtype=float)
        r = np.array([a["r"] for a in archs], dtype=float)
        return 50 + ((ks - 3) / 2 * weights).sum(axis=1) + (r - 24) / 8 * 3

    return acc


def truth(space: SearchSpace, bound: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    rows = all_rows(space)
    values = np.stack([toy_acc(space)(space.from_matrix(rows)), macs_matrix(space, rows) / 1e6], axis=1)
    if bound is not None:
        values = values[values[:, 1] <= bound]
    return values, values[pareto_mask(values, ["max", "min"])]


def run(space: SearchSpace, algorithm: str, **kwargs: Any):  # type: ignore[no-untyped-def]
    args: dict[str, Any] = {"budget": BUDGET[algorithm], "seed": 0} | kwargs
    return search(
        space, {"acc": toy_acc(space), "macs": MMACs(space)}, {"acc": "max", "macs": "min"}, algorithm=algorithm, **args
    )


def test_registry_lists_every_algorithm() -> None:
    assert set(ALGORITHMS) <= set(list_algorithms())


@pytest.mark.parametrize(
    ("algorithm", "options"),
    [
        ("nsga2", {}),
        ("nsga2", {"selection": "hypervolume"}),
        ("nsga2", {"offspring_size": 5}),
        ("random", {}),
        ("linas", {}),
        ("linas", {"cheap_features": False, "acquisition": "crowding"}),
        ("optuna", {}),
    ],
)
def test_multi_objective_algorithms_approach_the_true_front(
    space: SearchSpace, algorithm: str, options: dict[str, Any]
) -> None:
    values, front = truth(space, bound=None)
    ref = {"acc": float(values[:, 0].min()), "macs": float(values[:, 1].max())}
    best = hypervolume(front, ["max", "min"], [ref["acc"], ref["macs"]])
    result = run(space, algorithm, **options)
    assert result.n_evaluations == BUDGET[algorithm] == len(result.history)
    ratio = result.hypervolume(ref) / best
    floor = {"nsga2": 0.97, "random": 0.85, "linas": 0.95, "optuna": 0.9}[algorithm]
    assert floor <= ratio <= 1.0 + 1e-9, f"{algorithm}: hypervolume ratio {ratio:.3f}"
    # Every front member is truly non-dominated among everything the search saw, and unique.
    keys = [space.key(a) for a, _ in result.pareto]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("neighbours", [0, 3])  # mating by two tournaments, or with a neighbour (the default)
def test_nsga2_beats_random_at_equal_budget(space: SearchSpace, neighbours: int) -> None:
    values, _ = truth(space)
    ref = {"acc": float(values[:, 0].min()), "macs": float(values[:, 1].max())}
    assert run(space, "nsga2", neighbours=neighbours).hypervolume(ref) > run(space, "random").hypervolume(ref)


def test_evolution_finds_the_constrained_optimum(space: SearchSpace) -> None:
    values, _ = truth(space)
    bound = float(np.median(values[:, 1]))
    feasible, _ = truth(space, bound)
    result = run(space, "evolution", constraints={"macs": bound})
    best = max(v["acc"] for _, v in result.pareto)
    assert best == pytest.approx(feasible[:, 0].max())
    assert all(v["macs"] <= bound for _, v in result.pareto)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_constraints_hold_and_same_seed_same_result(space: SearchSpace, algorithm: str) -> None:
    values, _ = truth(space)
    low, high = np.quantile(values[:, 1], [0.2, 0.6])
    kwargs: dict[str, Any] = {"constraints": {"macs": (float(low), float(high)), "acc": 55.0}}
    if algorithm != "evolution":
        kwargs["budget"] = min(BUDGET[algorithm], 150)
    first, second = run(space, algorithm, **kwargs), run(space, algorithm, **kwargs)
    assert first.pareto, first.reason
    for _, v in first.pareto:
        assert low <= v["macs"] <= high and v["acc"] >= 55.0
    np.testing.assert_array_equal(first.matrix, second.matrix)
    np.testing.assert_array_equal(first.values, second.values)
    other = run(space, algorithm, **(kwargs | {"seed": 1}))
    assert not np.array_equal(first.matrix, other.matrix)
    assert all(h.feasible == (low <= h.values["macs"] <= high and h.values["acc"] >= 55.0) for h in first.history)


def test_several_targets_each_with_its_own_constraint(space: SearchSpace) -> None:
    """Two latency models (MACs-like and a resolution-heavy one), each bounded, plus accuracy."""

    def lat_cpu(archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return macs_matrix(space, space.to_matrix(archs)) / 1e6 * 0.05

    def lat_note10(archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        ks = np.array([a["ks"] for a in archs], dtype=float)
        return np.array([a["r"] for a in archs], dtype=float) / 4 + ks.sum(axis=1) / 10

    rows = all_rows(space)
    archs = space.from_matrix(rows)
    cpu, note = lat_cpu(archs), lat_note10(archs)
    bounds = {"lat@cpu-ort": float(np.quantile(cpu, 0.7)), "lat@note10": float(np.quantile(note, 0.5))}
    objectives = {"acc": toy_acc(space), "lat@cpu-ort": lat_cpu, "lat@note10": lat_note10}
    directions = {"acc": "max", "lat@cpu-ort": "min", "lat@note10": "min"}
    for algorithm in ("nsga2", "evolution"):
        result = search(space, objectives, directions, bounds, algorithm=algorithm, budget=400, seed=0)
        assert result.pareto
        for _, v in result.pareto:
            assert v["lat@cpu-ort"] <= bounds["lat@cpu-ort"] and v["lat@note10"] <= bounds["lat@note10"]
        acc = toy_acc(space)(archs)
        feasible = (cpu <= bounds["lat@cpu-ort"]) & (note <= bounds["lat@note10"])
        assert max(v["acc"] for _, v in result.pareto) >= acc[feasible].max() - 1.0
        assert result.hypervolume({"acc": 50.0, "lat@cpu-ort": 100.0, "lat@note10": 100.0}) > 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_infeasible_constraint_gives_empty_front_with_reason(space: SearchSpace, algorithm: str) -> None:
    result = run(space, algorithm, constraints={"macs": 0.5}, budget=50_000 if algorithm == "evolution" else 60)
    assert result.pareto == []
    assert result.reason is not None and "macs <= 0.5" in result.reason and "smallest value seen" in result.reason
    if algorithm == "evolution":
        assert result.n_evaluations <= 1000 + 4, "evolution must give up after a bounded number of evaluations"
        assert result.reason.startswith("stopped early")


def test_constraints_met_alone_but_not_together_are_explained(space: SearchSpace) -> None:
    values, _ = truth(space)
    result = run(space, "nsga2", budget=200, constraints={"macs": float(values[:, 1].min()) + 0.01, "acc": 60.0})
    assert result.pareto == [] and result.reason is not None and "at once" in result.reason


def test_progress_reports_every_generation(space: SearchSpace) -> None:
    events: list[SearchProgress] = []
    result = run(space, "nsga2", budget=300, progress=events.append, population_size=50, offspring_size=50)
    assert [e.generation for e in events] == list(range(len(events)))
    assert len(events) == 6
    assert [e.evaluations for e in events] == [50, 100, 150, 200, 250, 300]
    assert events[-1].front_size >= len(result.pareto) > 0
    assert events[-1].best["acc"] == pytest.approx(max(v["acc"] for _, v in result.pareto))


def test_predict_matrix_fast_path_is_used(space: SearchSpace) -> None:
    macs = MMACs(space)
    result = search(
        space, {"acc": toy_acc(space), "macs": macs}, {"acc": "max"}, algorithm="random", budget=120, seed=0
    )
    assert macs.rows == 120 == result.n_evaluations


def test_linas_calls_cheap_objectives_directly_and_counts_only_real_evaluations(space: SearchSpace) -> None:
    """Vectorised objectives (MACs, tables) are exact in LINAS's inner search; the expensive one is a surrogate."""
    acc = toy_acc(space)
    calls: list[int] = []

    def expensive(archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        calls.append(len(archs))
        return acc(archs)

    macs = MMACs(space)
    result = search(space, {"acc": expensive, "macs": macs}, {"acc": "max"}, algorithm="linas", budget=60, seed=0)
    assert sum(calls) == 60 == result.n_evaluations
    assert macs.rows > 10 * 60  # the inner NSGA-II scored its populations with the real MACs


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"directions": {"latency": "min"}}, KeyError, "directions name unknown objective"),
        ({"constraints": {"latency": 5.0}}, KeyError, "constraints name unknown objective"),
        ({"budget": 0}, ValueError, "budget must be a positive"),
        ({"budget": -3}, ValueError, "budget must be a positive"),
        ({"budget": 2.5}, ValueError, "budget must be a positive"),
        ({"algorithm": "annealing"}, KeyError, "registered: evolution, linas, nsga2, optuna, random"),
        ({"directions": {"acc": "up"}}, ValueError, "direction of 'acc' must be 'min' or 'max'"),
        ({"constraints": {"macs": (5.0, 1.0)}}, ValueError, "low 5.0 > high 1.0"),
        ({"constraints": {"macs": "fast"}}, ValueError, "constraint on 'macs' must be a number"),
        ({"population": 10}, ValueError, "unknown option.*population_size"),
        ({"objective": "speed"}, KeyError, "evolution objective 'speed'"),
        ({"algorithm": "optuna", "sampler": "cmaes"}, ValueError, "unknown optuna sampler"),
        ({"algorithm": "nsga2", "local": 1.5}, ValueError, "local must be in"),
        ({"algorithm": "nsga2", "selection": "sms"}, ValueError, "selection must be one of"),
        ({"algorithm": "nsga2", "offspring_size": 0}, ValueError, "offspring_size must be >= 1"),
        ({"algorithm": "nsga2", "neighbours": -1}, ValueError, "neighbours must be >= 0"),
        ({"algorithm": "linas", "acquisition": "ei"}, ValueError, "acquisition must be one of"),
    ],
)
def test_bad_input_is_a_clear_error(space: SearchSpace, kwargs: dict[str, Any], error: type, match: str) -> None:
    args: dict[str, Any] = {"directions": {"acc": "max"}, "budget": 10, "algorithm": "evolution"} | kwargs
    with pytest.raises(error, match=match):
        search(space, {"acc": toy_acc(space), "macs": MMACs(space)}, **args)


def test_objective_returning_the_wrong_length_is_named(space: SearchSpace) -> None:
    with pytest.raises(ValueError, match="objective 'bad' returned 1 values"):
        search(space, {"bad": lambda archs: [0.0]}, algorithm="random", budget=5)


def test_hypervolume_reference_must_name_every_objective(space: SearchSpace) -> None:
    result = run(space, "random", budget=20)
    with pytest.raises(KeyError, match="missing"):
        result.hypervolume({"acc": 0.0})


def test_novelty_is_judged_on_subnets_not_genotypes(space: SearchSpace) -> None:
    from nas.search.population import Seen, novel_genes, top_up

    rng = np.random.default_rng(0)
    genes = space.random_genes(rng, 50)
    inactive = ~space.active_mask(genes)
    twin = genes.copy()
    k = slice(0, space.n_blocks)
    twin[:, k] = np.where(inactive, (genes[:, k] + 1) % len(space.kernel_sizes), genes[:, k])  # other hidden genes
    assert not np.array_equal(twin, genes)
    assert np.array_equal(space.canonicalize_matrix(twin), space.canonicalize_matrix(genes))
    seen = Seen()
    distinct = len(np.unique(space.canonicalize_matrix(genes), axis=0))
    assert len(novel_genes(space, seen, np.concatenate([genes, twin]))) == distinct
    seen.add(space.canonicalize_matrix(genes[:10]))
    fresh = top_up(space, seen, twin, 45, rng)
    assert len(fresh) == 45
    canon = space.canonicalize_matrix(fresh)
    assert len(np.unique(canon, axis=0)) == 45 and not any(seen.has(row) for row in np.ascontiguousarray(canon))


def test_nsga2_never_spends_two_evaluations_on_one_subnet(space: SearchSpace) -> None:
    def macs(archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return macs_matrix(space, space.to_matrix(archs)) / 1e6

    result = search(space, {"macs": macs, "acc": toy_acc(space)}, {"macs": "min", "acc": "max"}, algorithm="nsga2",
                    budget=600, seed=0)  # fmt: skip
    assert result.n_evaluations == 600
    assert len(np.unique(result.matrix, axis=0)) == 600


def test_survivors_keep_whole_fronts_and_cut_the_last_by_hypervolume() -> None:
    from nas.search.pareto import crowding_distance, hypervolume_min
    from nas.search.population import survivors

    first = np.array([[0.0, 3.0], [1.0, 2.0], [3.0, 0.0]])
    second = np.array([[1.0, 4.0], [1.5, 3.5], [2.0, 3.0], [2.2, 2.9], [4.0, 1.0], [4.5, 0.9]])
    values = np.concatenate([first, second])
    violation = np.zeros(len(values))
    for by_hypervolume in (False, True):
        keep = survivors(values, violation, 5, by_hypervolume)
        assert {0, 1, 2} <= set(keep.tolist()) and len(keep) == 5
    # dropping one row of the last front: the greedy cut is the best subset
    keep = survivors(values, violation, 8, by_hypervolume=True)
    ref = values.max(axis=0) + 0.1 * (values.max(axis=0) - values.min(axis=0))
    chosen = sorted(int(i) - 3 for i in keep if i >= 3)
    best = max(itertools.combinations(range(len(second)), 5), key=lambda c: hypervolume_min(second[list(c)], ref))
    assert chosen == sorted(best) and chosen != sorted(np.argsort(-crowding_distance(second))[:5].tolist())
    # an infeasible row never displaces a feasible one
    violation[1] = 1.0
    assert 1 not in survivors(values, violation, 8, by_hypervolume=True).tolist()
    # 3 objectives: crowding cuts (exact contributions per removal would cost too much per generation)
    three = np.random.default_rng(0).random((30, 3))
    ok = np.zeros(30)
    assert survivors(three, ok, 12, by_hypervolume=True).tolist() == survivors(three, ok, 12).tolist()


def test_linas_picks_the_candidates_that_add_most_hypervolume() -> None:
    from nas.search.linas import hypervolume_picks

    known = np.array([[0.0, 2.0], [2.0, 0.0], [2.0, 2.0]])  # reference: (2.2, 2.2)
    candidates = np.array([[3.0, 3.0], [1.2, 0.5], [1.9, 1.9], [0.5, 1.0]])
    picks = hypervolume_picks(candidates, known, 3)
    # (0.5, 1) adds 1.5 (more than (1.2, 0.5)'s 1.2); then (1.2, 0.5) still adds 0.4, while (1.9, 1.9)
    # and the dominated (3, 3) add nothing: stop after two
    assert picks.tolist() == [3, 1]


def test_nearest_rows_in_normalised_objective_space() -> None:
    from nas.search.nsga2 import nearest

    # the second objective spans 100x the first: without normalisation row 1 would be nearest to row 0
    values = np.array([[0.0, 0.0], [1.0, 10.0], [0.0, 30.0], [0.5, 100.0]])
    assert nearest(values, 2).tolist() == [[2, 1], [0, 2], [0, 3], [2, 1]]
    assert nearest(values[:2], 5).shape == (2, 1)  # at most the other rows


def test_nsga2_offspring_size_sets_the_children_per_generation(space: SearchSpace) -> None:
    result = run(space, "nsga2", population_size=10, offspring_size=4)
    counts = np.bincount(result.generation)
    assert counts[0] == 10 and set(counts[1:-1].tolist()) == {4} and 1 <= counts[-1] <= 4


def test_nsga2_starts_from_small_and_large_subnets_spread_over_the_resolutions() -> None:
    from nas.spaces import get_space

    big = get_space("ofa_mbv3_d234_e346_k357_w1.0")  # 25 resolutions: 50 anchors for a population of 12
    result = search(big, {"macs": MMACs(big)}, {"macs": "min"}, algorithm="nsga2", budget=30, seed=0)
    first = result.matrix[result.generation == 0]
    keys = {big.key(a) for a in big.from_matrix(first)}
    mins = [r for r in big.resolutions if big.key(big.min_arch(r)) in keys]
    maxs = [r for r in big.resolutions if big.key(big.max_arch(r)) in keys]
    assert len(first) == 12 and len(mins) + len(maxs) == 6 and mins and maxs
    assert min(mins) == big.resolutions[0] and max(maxs) == big.resolutions[-1]


def test_linas_with_more_objectives_than_exact_hypervolume_handles(space: SearchSpace) -> None:
    objectives = {"acc": toy_acc(space), "m1": MMACs(space), "m2": MMACs(space), "m3": MMACs(space)}
    result = search(space, objectives, {"acc": "max", "m1": "min", "m2": "min", "m3": "min"}, algorithm="linas",
                    budget=30, seed=0)  # fmt: skip
    assert result.n_evaluations == 30 and result.pareto
