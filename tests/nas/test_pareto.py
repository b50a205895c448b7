"""Pareto utilities against brute force on random points, with ties and duplicates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nas.search.pareto import (
    crowding_distance,
    hypervolume,
    hypervolume_contributions,
    hypervolume_truncation,
    knee_point,
    non_dominated_ranks,
    pareto_mask,
)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((a <= b).all() and (a < b).any())


def brute_mask(m: np.ndarray) -> np.ndarray:
    return np.array([not any(dominates(m[j], m[i]) for j in range(len(m))) for i in range(len(m))])


def brute_ranks(m: np.ndarray) -> np.ndarray:
    ranks = np.full(len(m), -1)
    rank = 0
    while (ranks < 0).any():
        left = np.flatnonzero(ranks < 0)
        for i in left:
            if not any(dominates(m[j], m[i]) for j in left):
                ranks[i] = rank
        rank += 1
    return ranks


def brute_hv(m: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume of the union of boxes [p, ref] by summing the covered cells of the coordinate grid."""
    pts = m[(m < ref).all(axis=1)]
    if not len(pts):
        return 0.0
    axes = [np.unique(np.append(pts[:, d], ref[d])) for d in range(m.shape[1])]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        low = np.array([axes[d][c] for d, c in enumerate(cell)])
        if any(dominates(p, low) or (p == low).all() or (p <= low).all() for p in pts):
            total += float(np.prod([axes[d][c + 1] - axes[d][c] for d, c in enumerate(cell)]))
    return total


def random_points(seed: int, n: int, k: int) -> np.ndarray:
    # Small integer grid: many ties and exact duplicates.
    return np.random.default_rng(seed).integers(0, 6, (n, k)).astype(float)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 4])
def test_pareto_mask_and_ranks_match_brute_force(seed: int, k: int) -> None:
    m = random_points(seed, 40, k)
    directions = ["min", "max", "min", "max"][:k]
    signed = m * np.array([1 if d == "min" else -1 for d in directions])
    np.testing.assert_array_equal(pareto_mask(m, directions), brute_mask(signed))
    np.testing.assert_array_equal(non_dominated_ranks(m, directions), brute_ranks(signed))


def test_duplicated_front_points_are_all_kept() -> None:
    m = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [2.0, 2.0]])
    assert pareto_mask(m, ["min", "min"]).tolist() == [True, True, True, False]
    assert non_dominated_ranks(m, ["min", "min"]).tolist() == [0, 0, 0, 1]


def brute_crowding(m: np.ndarray) -> np.ndarray:
    n, k = m.shape
    out = np.zeros(n)
    for d in range(k):
        order = sorted(range(n), key=lambda i: (m[i, d], i))
        span = m[order[-1], d] - m[order[0], d]
        out[order[0]] = out[order[-1]] = np.inf
        for pos in range(1, n - 1):
            out[order[pos]] += (m[order[pos + 1], d] - m[order[pos - 1], d]) / (span if span > 0 else 1.0)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_crowding_distance_matches_brute_force(seed: int) -> None:
    m = np.random.default_rng(seed).random((12, 3))
    np.testing.assert_allclose(crowding_distance(m), brute_crowding(m))
    assert np.isinf(crowding_distance(m[:2])).all()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_matches_brute_force(seed: int, k: int) -> None:
    m = random_points(seed, 15, k)
    ref = np.full(k, 5.5)
    assert hypervolume(m, ["min"] * k, ref.tolist()) == pytest.approx(brute_hv(m, ref))


def test_hypervolume_handles_max_directions_and_points_outside() -> None:
    values = np.array([[0.9, 10.0], [0.8, 5.0], [0.5, 30.0]])  # acc (max), lat (min); last is past the reference
    hv = hypervolume(values, ["max", "min"], [0.0, 20.0])
    assert hv == pytest.approx(0.8 * 15 + 0.1 * 10)
    assert hypervolume(values[2:], ["max", "min"], [0.0, 20.0]) == 0.0


def test_hypervolume_beyond_three_objectives_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="1-3 objectives"):
        hypervolume(np.zeros((2, 4)), ["min"] * 4, [1.0] * 4)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_contributions_match_brute_force(seed: int, k: int) -> None:
    points = np.random.default_rng(seed).random((9, k)) + 0.1
    front = 5 * points / points.sum(axis=1, keepdims=True)  # on a plane: mutually non-dominated
    front = np.concatenate([front, front[:1]])  # a duplicate: neither copy contributes
    ref = np.full(k, 5.5)
    total = brute_hv(front, ref)
    expected = [total - brute_hv(np.delete(front, i, axis=0), ref) for i in range(len(front))]
    np.testing.assert_allclose(hypervolume_contributions(front, ref), expected, atol=1e-9)
    assert max(expected) > 0


@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_truncation_is_greedy_and_keeps_the_best_subset_of_a_small_front(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.random(8))
    front = np.column_stack([x, 1 - np.sqrt(x) + 0.05 * rng.random(8)])
    front = front[brute_mask(front)]
    ref = np.array([1.1, 1.1])
    kept = hypervolume_truncation(front, len(front) - 1, ref)
    best = max(itertools.combinations(range(len(front)), len(front) - 1), key=lambda c: brute_hv(front[list(c)], ref))
    assert sorted(kept.tolist()) == sorted(best)
    assert len(hypervolume_truncation(front, 2, ref)) == 2


def test_knee_point_is_the_balanced_point() -> None:
    front = np.array([[0.0, 10.0], [1.0, 2.0], [2.0, 1.5], [10.0, 0.0]])
    assert knee_point(front, ["min", "min"]) == 1
    with pytest.raises(ValueError):
        knee_point(np.zeros((0, 2)), ["min", "min"])
