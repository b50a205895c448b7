"""Pareto utilities, vectorised with numpy: dominance, non-dominated sorting, crowding, hypervolume, knee.

Functions taking ``directions`` accept objective matrices in the user's form ("min"/"max" per
column); the ``*_min`` helpers take matrices already in minimisation form (`as_minimisation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DIRECTIONS = ("min", "max")

FloatMatrix = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def as_minimisation(values: npt.ArrayLike, directions: Sequence[str]) -> FloatMatrix:
    """Objective matrix (n, k) with every "max" column negated, so that smaller is better everywhere.

    Raises:
        ValueError: a direction other than "min"/"max", or a column count that does not match.
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(directions):
        raise ValueError(f"values must be (n, {len(directions)}), got shape {matrix.shape}")
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ValueError(f"directions must be 'min' or 'max', got {bad}")
    signs = np.array([1.0 if d == "min" else -1.0 for d in directions])
    return matrix * signs


def dominance_matrix(m: FloatMatrix) -> BoolArray:
    """(n, n) boolean: ``[i, j]`` is True when row i dominates row j (minimisation form).

    Memory is n^2 booleans; use it for populations, not for long histories.
    """
    no_worse = (m[:, None, :] <= m[None, :, :]).all(axis=2)
    better = (m[:, None, :] < m[None, :, :]).any(axis=2)
    return np.logical_and(no_worse, better)


def pareto_mask_min(m: FloatMatrix) -> BoolArray:
    """Non-dominated rows of a minimisation-form matrix; equal non-dominated rows are all kept.

    Culls with one non-dominated point at a time (the lexicographically smallest survivor), so the
    cost is O(n * front size) and any number of rows fits in memory.
    """
    n = len(m)
    mask = np.zeros(n, dtype=bool)
    alive = np.arange(n)
    while alive.size:
        sub = m[alive]
        best = alive[np.lexsort(sub.T[::-1])[0]]
        point = m[best]
        equal = (sub == point).all(axis=1)
        dominated = (sub >= point).all(axis=1) & ~equal
        mask[alive[equal]] = True
        alive = alive[~(equal | dominated)]
    return mask


def pareto_mask(values: npt.ArrayLike, directions: Sequence[str]) -> BoolArray:
    """Boolean mask of the non-dominated rows.

    A row is dominated if another row is no worse in every objective and better in one.
    Duplicated non-dominated rows are all kept.
    """
    return pareto_mask_min(as_minimisation(values, directions))


def non_dominated_ranks_min(m: FloatMatrix) -> IntArray:
    """Front index of every row (0 = non-dominated), by peeling fronts off the dominance matrix."""
    dom = dominance_matrix(m)
    count = dom.sum(axis=0)
    ranks = np.full(len(m), -1, dtype=np.int64)
    rank = 0
    current = count == 0
    while current.any():
        ranks[current] = rank
        count = count - dom[current].sum(axis=0)
        count[ranks >= 0] = -1
        current = count == 0
        rank += 1
    return ranks


def non_dominated_ranks(values: npt.ArrayLike, directions: Sequence[str]) -> IntArray:
    """Non-dominated sorting: the front index of every row (0 = the Pareto front, 1 = next, ...)."""
    return non_dominated_ranks_min(as_minimisation(values, directions))


def crowding_distance(values: npt.ArrayLike) -> FloatMatrix:
    """NSGA-II crowding distance of the rows of one front (direction does not matter).

    Per objective, the boundary rows get infinity and the others the gap between their neighbours
    divided by the objective's range; the distances are summed over objectives.
    """
    m = np.asarray(values, dtype=np.float64)
    n, k = m.shape
    out = np.zeros(n, dtype=np.float64)
    if n <= 2:
        out[:] = np.inf
        return out
    order = np.argsort(m, axis=0, kind="stable")
    sorted_m = np.take_along_axis(m, order, axis=0)
    span = sorted_m[-1] - sorted_m[0]
    gaps = np.zeros((n, k))
    gaps[1:-1] = (sorted_m[2:] - sorted_m[:-2]) / np.where(span > 0, span, 1.0)
    gaps[0] = gaps[-1] = np.inf
    np.add.at(out, order.ravel(), gaps.ravel())
    return out


def _hv2(points: FloatMatrix, ref: npt.NDArray[np.float64]) -> float:
    """Exact 2-D hypervolume of points strictly better than ref (minimisation)."""
    pts = points[(points < ref).all(axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    # Keep the staircase: points whose second objective improves on all before them.
    best_so_far = np.minimum.accumulate(pts[:, 1])
    keep = np.concatenate([[True], pts[1:, 1] < best_so_far[:-1]])
    stair = pts[keep]
    widths = np.diff(np.append(stair[:, 0], ref[0]))
    return float(np.sum(widths * (ref[1] - stair[:, 1])))


def _hv3(points: FloatMatrix, ref: npt.NDArray[np.float64]) -> float:
    """Exact 3-D hypervolume by slicing along the third objective."""
    pts = points[(points < ref).all(axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[np.argsort(pts[:, 2], kind="stable")]
    levels = np.append(pts[:, 2], ref[2])
    total = 0.0
    for i in range(len(pts)):
        height = levels[i + 1] - levels[i]
        if height > 0:
            total += height * _hv2(pts[: i + 1, :2], ref[:2])
    return total


def hypervolume_min(m: FloatMatrix, reference: npt.ArrayLike) -> float:
    """Exact hypervolume dominated by the rows of a minimisation-form matrix, bounded by `reference`.

    Rows not strictly better than the reference in every objective add nothing.

    Raises:
        ValueError: more than 3 objectives (exact computation is only implemented for 2 and 3), or a
            reference of the wrong length.
    """
    m = np.asarray(m, dtype=np.float64).reshape(len(m), -1) if len(m) else np.zeros((0, np.size(reference)))
    ref = np.asarray(reference, dtype=np.float64).ravel()
    if m.shape[1] != len(ref):
        raise ValueError(f"reference has {len(ref)} values for {m.shape[1]} objectives")
    if len(ref) == 1:
        return float(max(0.0, ref[0] - m[:, 0].min())) if len(m) else 0.0
    if len(ref) == 2:
        return _hv2(m, ref)
    if len(ref) == 3:
        return _hv3(m, ref)
    raise ValueError(f"exact hypervolume is implemented for 1-3 objectives, got {len(ref)}")


def hypervolume(values: npt.ArrayLike, directions: Sequence[str], reference: Sequence[float]) -> float:
    """Exact hypervolume of a point set in the user's directions, bounded by the `reference` point.

    Args:
        values: (n, k) objective values, k in 1..3.
        directions: "min"/"max" per objective.
        reference: the worst acceptable value per objective (an upper bound for "min" objectives,
            a lower bound for "max" ones).

    Raises:
        ValueError: bad directions, shapes, or more than 3 objectives.
    """
    ref = as_minimisation(np.asarray(reference, dtype=np.float64)[None, :], directions)[0]
    return hypervolume_min(as_minimisation(values, directions), ref)


def nadir_reference(values: FloatMatrix, margin: float = 0.1) -> npt.NDArray[np.float64]:
    """A hypervolume reference for minimisation-form rows: their worst value per objective, pushed out.

    Each objective's worst value moves out by `margin` times its range (by `margin` where the range is
    0), so that the extreme rows add hypervolume too.
    """
    low, high = values.min(axis=0), values.max(axis=0)
    return high + margin * np.where(high > low, high - low, 1.0)


def hypervolume_contributions(front: FloatMatrix, reference: npt.ArrayLike) -> FloatMatrix:
    """Exclusive hypervolume of each row of a minimisation-form front: what the front loses without it.

    Rows that repeat another row contribute 0 (neither copy is needed). 2 objectives take one sort;
    3 take one hypervolume per row.

    Raises:
        ValueError: more than 3 objectives, or a reference of the wrong length.
    """
    m = np.asarray(front, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64).ravel()
    if m.ndim != 2 or m.shape[1] != len(ref):
        raise ValueError(f"reference has {len(ref)} values for a front of shape {m.shape}")
    if len(ref) != 2:
        total = hypervolume_min(m, ref)
        keep = np.ones(len(m), dtype=bool)
        out = np.empty(len(m))
        for i in range(len(m)):
            keep[i] = False
            out[i] = total - hypervolume_min(m[keep], ref)
            keep[i] = True
        return np.maximum(out, 0.0)
    clipped = np.minimum(m, ref)
    order = np.lexsort((clipped[:, 1], clipped[:, 0]))
    pts = clipped[order]
    # Along a 2-D front sorted by the first objective, each point's exclusive box reaches to the next
    # point's first objective and to the previous point's second one (the reference at the ends).
    right = np.append(pts[1:, 0], ref[0])
    above = np.concatenate([[ref[1]], pts[:-1, 1]])
    out = np.empty(len(m))
    out[order] = np.maximum(right - pts[:, 0], 0.0) * np.maximum(above - pts[:, 1], 0.0)
    return out


def hypervolume_truncation(front: FloatMatrix, keep: int, reference: npt.ArrayLike) -> IntArray:
    """Indices of `keep` rows of a front chosen greedily for hypervolume (SMS-EMOA's selection).

    Removes, one at a time, the row whose exclusive contribution is smallest, recomputing the
    contributions after each removal.
    """
    alive = np.arange(len(front))
    while len(alive) > keep:
        contributions = hypervolume_contributions(front[alive], reference)
        alive = np.delete(alive, int(np.argmin(contributions)))
    return alive


def knee_point(values: npt.ArrayLike, directions: Sequence[str]) -> int:
    """Index of the knee of a front: the row closest to the ideal point after min-max normalisation.

    Raises:
        ValueError: no rows.
    """
    m = as_minimisation(values, directions)
    if not len(m):
        raise ValueError("knee_point needs at least one point")
    low, high = m.min(axis=0), m.max(axis=0)
    normalised = (m - low) / np.where(high > low, high - low, 1.0)
    return int(np.argmin(np.linalg.norm(normalised, axis=1)))
