"""The extension point of search algorithms, their registry, and the context they run in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from nas.registry import Registry
from nas.search.pareto import FloatMatrix, pareto_mask_min
from nas.search.problem import Problem
from nas.search.result import SearchResult, empty_front_reason
from nas.space import IntMatrix


@dataclass(frozen=True)
class SearchProgress:
    """What a progress callback gets after each generation (or round, or batch).

    Attributes:
        algorithm: the algorithm's name.
        generation: the generation just finished (0 is the first).
        evaluations: objective evaluations so far.
        budget: the evaluation budget.
        front_size: size of the feasible non-dominated set so far (duplicates included).
        best: best feasible value seen so far per objective (absent before any feasible one).
    """

    algorithm: str
    generation: int
    evaluations: int
    budget: int
    front_size: int
    best: dict[str, float]


ProgressCallback = Callable[[SearchProgress], None]


@dataclass(frozen=True)
class Evaluated:
    """Rows that were evaluated: the matrix, values in minimisation form, total constraint violation."""

    matrix: IntMatrix
    values: FloatMatrix
    violation: npt.NDArray[np.float64]


class SearchContext:
    """What an algorithm sees: the problem, the budget, a seeded RNG and the evaluation function.

    Args:
        problem: objectives and constraints.
        budget: the number of objective evaluations allowed.
        rng: the search's random generator.
        algorithm: the algorithm's name (for progress events and the result).
        progress: called with a `SearchProgress` by `end_generation`.
    """

    def __init__(
        self,
        problem: Problem,
        budget: int,
        rng: np.random.Generator,
        algorithm: str,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.problem = problem
        self.space = problem.space
        self.budget = budget
        self.rng = rng
        self.algorithm = algorithm
        self._progress = progress
        self._chunks: list[tuple[IntMatrix, FloatMatrix, int]] = []
        self.evaluations = 0
        self.generation = 0
        self.stopped: str | None = None
        k = len(problem.names)
        self._front = np.zeros((0, k))
        self._best = np.full(k, np.inf)

    @property
    def remaining(self) -> int:
        """Evaluations left in the budget."""
        return self.budget - self.evaluations

    def evaluate(self, matrix: IntMatrix) -> Evaluated:
        """Evaluate rows (at most `remaining` of them; extra rows are dropped) and record them.

        The rows are canonicalised first, so genotypes (`SearchSpace.random_genes`) may be passed;
        `Evaluated.matrix` holds the canonical rows, in the order given.
        """
        matrix = self.space.canonicalize_matrix(matrix[: max(self.remaining, 0)])
        values = self.problem.evaluate(matrix) if len(matrix) else np.zeros((0, len(self.problem.names)))
        self._chunks.append((matrix, values, self.generation))
        self.evaluations += len(matrix)
        violation = self.problem.violation(values)
        minimised = values * self.problem.signs
        feasible = minimised[violation == 0]
        if len(feasible):
            self._best = np.minimum(self._best, np.nanmin(feasible, axis=0))
            if self._progress is not None:
                both = np.concatenate([self._front, feasible])
                self._front = both[pareto_mask_min(both)]
        return Evaluated(matrix, minimised, violation)

    def end_generation(self) -> None:
        """Report progress for the generation just finished and start the next one."""
        if self._progress is not None:
            best = {
                n: float(v * s)
                for n, v, s in zip(self.problem.names, self._best, self.problem.signs, strict=True)
                if np.isfinite(v)
            }
            self._progress(
                SearchProgress(self.algorithm, self.generation, self.evaluations, self.budget, len(self._front), best)
            )
        self.generation += 1

    def stop_infeasible(self) -> None:
        """Record that the search stops because nothing evaluated so far is feasible."""
        values = np.concatenate([c[1] for c in self._chunks]) if self._chunks else np.zeros((0, 0))
        self.stopped = "stopped early: " + empty_front_reason(self.problem, values)

    def result(self) -> SearchResult:
        """Everything evaluated, as a `SearchResult`."""
        k = len(self.problem.names)
        width = 2 * self.space.n_blocks + self.space.n_stages + 1
        matrix = np.concatenate([c[0] for c in self._chunks]) if self._chunks else np.zeros((0, width), np.int64)
        values = np.concatenate([c[1] for c in self._chunks]) if self._chunks else np.zeros((0, k))
        generations = [np.full(len(c[0]), c[2], np.int64) for c in self._chunks]
        generation = np.concatenate(generations) if generations else np.zeros(0, np.int64)
        return SearchResult(self.problem, matrix, values, generation, self.algorithm, self.stopped)


class SearchAlgorithm(ABC):
    """A search algorithm: proposes subnets, evaluates them through the context, until the budget is spent.

    Contract for implementations (in the spirit of Optuna's ``BaseSampler``):

    - ``__init__`` takes the algorithm's options as keyword arguments with defaults and checks them
      (ValueError naming the option); it does no work.
    - `run` proposes canonical choice-index rows of ``ctx.space`` (use the space's ``*_matrix``
      operations) and passes them to ``ctx.evaluate``, which returns objective values in
      minimisation form and the total constraint violation per row (0 = feasible). It must not
      evaluate more than ``ctx.remaining`` rows (extra rows are dropped), must call
      ``ctx.end_generation()`` after each generation, round or batch, must draw all randomness
      from ``ctx.rng`` (same seed, same result), and must return once ``ctx.remaining`` is 0. When
      it gives up because nothing is feasible, it calls ``ctx.stop_infeasible()`` first and returns.
    - It never loops without evaluating: every iteration spends budget or returns.
    """

    name: ClassVar[str]

    @abstractmethod
    def run(self, ctx: SearchContext) -> None:
        """Search until the budget is spent (or give up early, see the class docstring)."""


ALGORITHMS: Registry[type[SearchAlgorithm]] = Registry("search algorithm")


def register_algorithm(name: str) -> Callable[[type[SearchAlgorithm]], type[SearchAlgorithm]]:
    """Class decorator registering a `SearchAlgorithm` under `name` (ValueError if taken)."""

    def decorator(cls: type[SearchAlgorithm]) -> type[SearchAlgorithm]:
        cls.name = name
        return ALGORITHMS.register(name)(cls)

    return decorator


list_algorithms = ALGORITHMS.names
"""Names of the registered search algorithms, sorted."""
