"""Subnet search: `search` over registered algorithms, results with Pareto fronts, Pareto utilities.

>>> from nas.search import search
>>> result = search(space, {"acc": f_acc, "lat": f_lat}, {"acc": "max", "lat": "min"},
...                 constraints={"lat": 25.0}, algorithm="evolution", budget=50_000, seed=0)
"""

from nas.search import evolution, linas, nsga2, optuna_search, random_search  # noqa: F401  (register)
from nas.search.base import (
    ALGORITHMS,
    SearchAlgorithm,
    SearchContext,
    SearchProgress,
    list_algorithms,
    register_algorithm,
)
from nas.search.core import search
from nas.search.objectives import CostObjective
from nas.search.problem import Problem
from nas.search.result import HistoryEntry, SearchResult

__all__ = [
    "ALGORITHMS",
    "CostObjective",
    "HistoryEntry",
    "Problem",
    "SearchAlgorithm",
    "SearchContext",
    "SearchProgress",
    "SearchResult",
    "list_algorithms",
    "register_algorithm",
    "search",
]
