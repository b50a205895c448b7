"""`search`: the one entry point, checking every input before any evaluation."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from nas.search.base import ALGORITHMS, ProgressCallback, SearchContext
from nas.search.problem import Bound, Objective, Problem
from nas.search.result import SearchResult
from nas.space import RngLike, SearchSpace


def search(
    space: SearchSpace,
    objectives: Mapping[str, Objective],
    directions: Mapping[str, str] | None = None,
    constraints: Mapping[str, Bound] | None = None,
    algorithm: str = "evolution",
    budget: int = 1000,
    seed: RngLike = None,
    progress: ProgressCallback | None = None,
    **options: Any,
) -> SearchResult:
    """Search a space for subnets that optimise the objectives under the constraints.

    Args:
        space: the search space.
        objectives: name -> vectorised callable on a list of arch dicts returning one float per
            arch; an object with ``predict_matrix(matrix)`` is called on choice-index matrices
            instead (see `nas.search.problem`).
        directions: name -> "min" or "max" (default "min").
        constraints: name -> bound. A number bounds the bad side (upper bound for "min", lower
            bound for "max"); ``(low, high)`` (either may be None) bounds both sides.
        algorithm: a name from `list_algorithms()`.
        budget: the number of objective evaluations (subnets evaluated) allowed.
        seed: seed or generator; the same seed gives the same result.
        progress: called after every generation / round / batch with a `SearchProgress`.
        **options: the algorithm's options (see its class, e.g. `Evolution`).

    Returns:
        The `SearchResult`: Pareto front, full history, hypervolume, and the reason when the
        front is empty.

    Raises:
        KeyError: unknown algorithm (listing the known ones), or an unknown objective name in
            `directions` or `constraints`.
        ValueError: a bad budget, direction, bound or algorithm option.
    """
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget <= 0:
        raise ValueError(f"budget must be a positive number of evaluations, got {budget!r}")
    cls = ALGORITHMS.get(algorithm)
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for algorithm {algorithm!r}; allowed: {allowed}")
    problem = Problem.build(space, objectives, directions, constraints)
    runner = cls(**options)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ctx = SearchContext(problem, int(budget), rng, algorithm, progress)
    runner.run(ctx)
    return ctx.result()
