"""Building blocks shared by the algorithms: anchors, constrained ranking, NSGA-II selection, novelty."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from nas.search.pareto import (
    FloatMatrix,
    crowding_distance,
    hypervolume_truncation,
    nadir_reference,
    non_dominated_ranks_min,
)
from nas.space import IntMatrix, SearchSpace


def anchors(space: SearchSpace, every_resolution: bool = True) -> IntMatrix:
    """The smallest and largest subnet at every resolution (or overall): the extremes of cost."""
    resolutions = space.resolutions if every_resolution else (None,)
    archs = [space.min_arch(r) for r in resolutions] + [space.max_arch(r) for r in resolutions]
    return unique_rows(space.to_matrix(archs))


def unique_rows(matrix: IntMatrix) -> IntMatrix:
    """The distinct rows, in order of first occurrence."""
    if not len(matrix):
        return matrix
    _, first = np.unique(matrix, axis=0, return_index=True)
    return matrix[np.sort(first)]


def constrained_ranks(values: FloatMatrix, violation: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Deb's constraint domination as ranks.

    Feasible rows get their non-dominated sorting rank; the infeasible ones come after all of them,
    ordered by total violation (equal violations share a rank).
    """
    ranks = np.empty(len(values), dtype=np.int64)
    feasible = violation == 0
    ranks[feasible] = non_dominated_ranks_min(values[feasible]) if feasible.any() else 0
    start = int(ranks[feasible].max()) + 1 if feasible.any() else 0
    if (~feasible).any():
        _, dense = np.unique(violation[~feasible], return_inverse=True)
        ranks[~feasible] = start + dense
    return ranks


def rank_and_crowding(
    values: FloatMatrix, violation: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Constrained ranks and the crowding distance of every row within its front."""
    ranks = constrained_ranks(values, violation)
    crowd = np.zeros(len(values))
    # Infeasible rows are ordered by violation alone; crowding matters among feasible fronts only.
    for r in np.unique(ranks[violation == 0]):
        members = ranks == r
        crowd[members] = crowding_distance(values[members])
    return ranks, crowd


def survivors(
    values: FloatMatrix, violation: npt.NDArray[np.float64], n: int, by_hypervolume: bool = False
) -> npt.NDArray[np.int64]:
    """Indices of the `n` best rows: NSGA-II's environmental selection.

    Rows are taken by constrained rank. The front that does not fit whole is cut by larger crowding
    distance, or, with `by_hypervolume` and 2 objectives, by greedy hypervolume contribution
    (SMS-EMOA's selection) against the feasible rows' nadir pushed out by a tenth of their range.
    With 3 objectives every removal would cost one exact hypervolume per row (a search of 3,000
    evaluations took 36 s instead of 1 s), so crowding cuts there.
    """
    ranks, crowd = rank_and_crowding(values, violation)
    order = np.lexsort((-crowd, ranks))
    if not by_hypervolume or n >= len(values) or values.shape[1] != 2 or violation[order[n - 1]] > 0:
        return order[:n]
    cut = ranks[order[n - 1]]
    whole = order[ranks[order] < cut]
    front = np.flatnonzero(ranks == cut)
    reference = nadir_reference(values[violation == 0])
    return np.concatenate([whole, front[hypervolume_truncation(values[front], n - len(whole), reference)]])


def tournament(
    ranks: npt.NDArray[np.int64], crowd: npt.NDArray[np.float64], n: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """`n` winners of binary tournaments (lower rank wins, then larger crowding distance)."""
    a = rng.integers(0, len(ranks), n)
    b = rng.integers(0, len(ranks), n)
    a_wins = (ranks[a] < ranks[b]) | ((ranks[a] == ranks[b]) & (crowd[a] >= crowd[b]))
    return np.where(a_wins, a, b)


class Seen:
    """The set of rows evaluated so far, to avoid spending budget twice on one subnet."""

    def __init__(self) -> None:
        self._keys: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, matrix: IntMatrix) -> None:
        """Remember these rows."""
        self._keys.update(row.tobytes() for row in np.ascontiguousarray(matrix))

    def has(self, row: npt.NDArray[np.int64]) -> bool:
        """Whether this (contiguous) row was added."""
        return row.tobytes() in self._keys


def top_up(space: SearchSpace, seen: Seen, rows: IntMatrix, n: int, rng: np.random.Generator) -> IntMatrix:
    """`n` rows whose subnets are new: `rows` without the seen and repeated subnets, topped up with random ones.

    Novelty is judged on canonical forms, but the rows keep their genes (genotypes stay genotypes).
    Tries a bounded number of random batches; when the space is (nearly) exhausted it returns
    repeats rather than looping, so a caller always has rows to spend its budget on.
    """
    out = novel_genes(space, seen, rows)[:n]
    for _ in range(8):
        if len(out) >= n:
            break
        out = novel_genes(space, seen, np.concatenate([out, space.random_genes(rng, 2 * n)]))[:n]
    if len(out) < n:
        out = np.concatenate([out, rows[: n - len(out)], space.random_genes(rng, n)])[:n]
    return out


def novel_genes(space: SearchSpace, seen: Seen, rows: IntMatrix) -> IntMatrix:
    """The rows whose canonical subnet is neither in `seen` nor repeats an earlier row, in order."""
    return rows[novel_mask(space, seen, rows)]


def novel_mask(space: SearchSpace, seen: Seen, rows: IntMatrix) -> npt.NDArray[np.bool_]:
    """Which rows `novel_genes` keeps."""
    keep = np.zeros(len(rows), dtype=bool)
    if not len(rows):
        return keep
    canon = np.ascontiguousarray(space.canonicalize_matrix(rows))
    _, first = np.unique(canon, axis=0, return_index=True)
    keep[np.sort(first)] = True
    keep &= np.array([not seen.has(row) for row in canon], dtype=bool)
    return keep
