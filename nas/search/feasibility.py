"""Proving a constraint infeasible before searching, from objectives that are sums of per-block terms.

MACs, parameter counts and lookup-table latencies share one form: a subnet's value is
``fixed[r] + sum of block[r, slot, kernel, expand] over its active slots``. A slot's term depends
only on the resolution and that slot's own choices (channel counts and spatial sizes do not depend
on the other slots), every slot picks its kernel and expand ratio freely, and a stage of depth
``d`` runs its first ``d`` slots. So the smallest value over the whole space is, per resolution,
the fixed term plus, per stage, the best depth's sum of its slots' smallest terms; the largest
likewise. `additive_minimum` computes it exactly in O(resolutions x slots x choices), for spaces
of ~10^19 subnets.

Cheaper-looking shortcuts are not exact. The space's `min_arch` at the smallest resolution is the
minimum only when every term grows with the kernel and the expand ratio, which a measured table
need not do (noise can price a 5x5 kernel under a 3x3): its value, like the best of a few thousand
samples, is only an upper bound of the minimum, which can show a bound reachable but never prove
it unreachable.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from nas.search.problem import Problem
from nas.space import IntMatrix, SearchSpace

FloatArray = npt.NDArray[np.float64]


@runtime_checkable
class AdditiveObjective(Protocol):
    """An objective whose value is a fixed term per resolution plus one term per active block slot.

    Contract: for every subnet of `space` with choice-index row ``(k, e, d, r)`` (see
    `SearchSpace.to_matrix`), the value is ``fixed[r] + sum(block[r, s, k[s], e[s]] for active s)``.
    """

    def additive_terms(self, space: SearchSpace) -> tuple[FloatArray, FloatArray]:
        """``fixed`` (n_resolutions,) and ``block`` (n_resolutions, n_blocks, n_kernels, n_expands) for `space`.

        NaN marks a term the objective cannot price (e.g. a lookup table without that entry).
        """
        ...


def additive_minimum(space: SearchSpace, fixed: FloatArray, block: FloatArray) -> tuple[float, IntMatrix]:
    """The smallest value of an additive objective over every subnet of `space`, and a subnet that has it.

    Args:
        space: the space.
        fixed: the fixed term per resolution index.
        block: the term of each slot per (resolution, slot, kernel, expand) index (no NaN).

    Returns:
        The minimum and a canonical choice-index row (1, columns) that attains it.
    """
    nr, nb, ns, md = len(space.resolutions), space.n_blocks, space.n_stages, space.max_depth
    per_slot = block.reshape(nr, nb, -1)
    choice = per_slot.argmin(axis=2)  # the best (kernel, expand) of every slot, per resolution
    best = np.take_along_axis(per_slot, choice[..., None], axis=2)[..., 0]
    stage_sums = best.reshape(nr, ns, md).cumsum(axis=2)[:, :, np.asarray(space.depths) - 1]  # per allowed depth
    depth = stage_sums.argmin(axis=2)
    totals = fixed + np.take_along_axis(stage_sums, depth[..., None], axis=2)[..., 0].sum(axis=1)
    r = int(totals.argmin())
    kernel, expand = np.divmod(choice[r], block.shape[3])
    row = np.concatenate([kernel, expand, depth[r], [r]]).astype(np.int64)[None, :]
    return float(totals[r]), space.canonicalize_matrix(row)


def additive_range(space: SearchSpace, objective: AdditiveObjective) -> tuple[float, float] | None:
    """The exact (smallest, largest) value of `objective` over `space`, or None where a term is missing."""
    fixed, block = objective.additive_terms(space)
    if np.isnan(fixed).any() or np.isnan(block).any():
        return None
    low, _ = additive_minimum(space, fixed, block)
    negated, _ = additive_minimum(space, -fixed, -block)
    return low, -negated


def infeasible_reason(problem: Problem) -> str | None:
    """Why no subnet of the space can meet a constraint, proven without evaluating any; None if none is proven.

    Only constraints on `AdditiveObjective` objectives are checked, each on its own: a bound
    outside the objective's exact range is unreachable. (Two bounds that are each reachable but
    never at once are found by the search, not here.)
    """
    for i in problem.constrained:
        name = problem.names[i]
        objective = problem.objectives[name]
        reachable = additive_range(problem.space, objective) if isinstance(objective, AdditiveObjective) else None
        if reachable is None:
            continue
        low, high = reachable
        if low > problem.highs[i]:
            return f"no subnet can meet {problem.describe_bound(i)}: the smallest {name} in the space is {low:.4g}"
        if high < problem.lows[i]:
            return f"no subnet can meet {problem.describe_bound(i)}: the largest {name} in the space is {high:.4g}"
    return None
