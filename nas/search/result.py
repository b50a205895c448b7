"""The outcome of a search: every evaluation, the feasible Pareto front, hypervolume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from nas.search.pareto import FloatMatrix, hypervolume_min, pareto_mask_min
from nas.search.problem import Problem
from nas.space import Arch, IntMatrix


@dataclass(frozen=True)
class HistoryEntry:
    """One evaluated subnet.

    Attributes:
        arch: the subnet (canonical).
        values: objective name -> value.
        feasible: whether every constraint held.
        generation: the generation (or round, or batch) it was evaluated in; 0 is the first.
    """

    arch: Arch
    values: dict[str, float]
    feasible: bool
    generation: int


class SearchResult:
    """Everything a search evaluated, in order, and the feasible non-dominated subnets among it.

    Args:
        problem: the search's objectives and constraints.
        matrix: choice-index rows of the evaluated subnets, in evaluation order.
        values: their objective values (user's directions), one column per objective.
        generation: the generation of each row.
        algorithm: the algorithm's registered name.
        stopped: why the search ended early, if it did (e.g. nothing feasible was found).
    """

    def __init__(
        self,
        problem: Problem,
        matrix: IntMatrix,
        values: FloatMatrix,
        generation: npt.NDArray[np.int64],
        algorithm: str,
        stopped: str | None = None,
    ) -> None:
        self.problem = problem
        self.matrix = matrix
        self.values = values
        self.generation = generation
        self.algorithm = algorithm
        self.stopped = stopped
        self.feasible: npt.NDArray[np.bool_] = problem.violation(values) == 0 if len(values) else np.zeros(0, bool)

    @property
    def names(self) -> tuple[str, ...]:
        """Objective names, in column order."""
        return self.problem.names

    @property
    def n_evaluations(self) -> int:
        """Number of objective evaluations (rows of the history)."""
        return len(self.matrix)

    @cached_property
    def pareto_indices(self) -> npt.NDArray[np.int64]:
        """History rows of the front: feasible, non-dominated, one per subnet, sorted by the first objective."""
        feasible = np.flatnonzero(self.feasible)
        if not feasible.size:
            return feasible.astype(np.int64)
        _, first = np.unique(self.matrix[feasible], axis=0, return_index=True)
        unique = feasible[np.sort(first)]
        m = self.values[unique] * self.problem.signs
        front = unique[pareto_mask_min(m)]
        return front[np.lexsort((self.values[front] * self.problem.signs).T[::-1])]

    @cached_property
    def pareto(self) -> list[tuple[Arch, dict[str, float]]]:
        """The front as (arch, {objective: value}) pairs, sorted by the first objective (best first)."""
        idx = self.pareto_indices
        archs = self.problem.space.from_matrix(self.matrix[idx])
        return [(a, self._values_dict(i)) for a, i in zip(archs, idx, strict=True)]

    @cached_property
    def history(self) -> list[HistoryEntry]:
        """Every evaluation in order (built on first access; long searches hold arrays until then)."""
        archs = self.problem.space.from_matrix(self.matrix)
        return [
            HistoryEntry(a, self._values_dict(i), bool(self.feasible[i]), int(self.generation[i]))
            for i, a in enumerate(archs)
        ]

    def _values_dict(self, row: int) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.values[row], strict=True)}

    @property
    def reason(self) -> str | None:
        """Why the front is empty (None when it is not), naming the constraint no subnet met."""
        if len(self.pareto_indices):
            return None
        if self.stopped is not None:
            return self.stopped
        return empty_front_reason(self.problem, self.values)

    def hypervolume(self, reference: Mapping[str, float]) -> float:
        """Exact hypervolume of the front (2 or 3 objectives; 1 gives the improvement over the reference).

        Args:
            reference: the worst acceptable value of every objective, e.g. ``{"acc": 0.0, "lat": 50.0}``.

        Raises:
            KeyError: the reference misses an objective or names an unknown one.
            ValueError: more than 3 objectives.
        """
        missing = [n for n in self.names if n not in reference]
        unknown = sorted(set(reference) - set(self.names))
        if missing or unknown:
            raise KeyError(
                f"reference must give exactly the objectives {list(self.names)}; missing {missing}, unknown {unknown}"
            )
        signs = self.problem.signs
        ref = np.array([reference[n] for n in self.names], dtype=np.float64) * signs
        return hypervolume_min(self.values[self.pareto_indices] * signs, ref)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary: algorithm, evaluations, front size and values, reason."""
        return {
            "algorithm": self.algorithm,
            "evaluations": self.n_evaluations,
            "front": [values for _, values in self.pareto],
            "reason": self.reason,
        }


def empty_front_reason(problem: Problem, values: FloatMatrix) -> str:
    """Explain why no evaluated row is feasible, naming the first constraint no row met."""
    n = len(values)
    if n == 0:
        return "no subnet was evaluated"
    met_all = np.ones(n, dtype=bool)
    for i in problem.constrained:
        column = values[:, i]
        met = (column >= problem.lows[i]) & (column <= problem.highs[i])
        if not met.any():
            seen = np.nanmin(column) if np.isfinite(problem.highs[i]) else np.nanmax(column)
            side = "smallest" if np.isfinite(problem.highs[i]) else "largest"
            return (
                f"no subnet met {problem.describe_bound(i)}: the {side} value seen was {seen:.4g} after {n} evaluations"
            )
        met_all &= met
    bounds = " and ".join(problem.describe_bound(i) for i in problem.constrained)
    return f"no subnet met {bounds} at once in {n} evaluations (each constraint alone was met)"
