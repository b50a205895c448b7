"""OFA's constrained evolutionary search, vectorised over the population.

Single objective (the first one, or ``objective=``) under constraints on all objectives. Each
generation keeps the best ``parent_ratio`` of the population and evaluates a new population of
children: ``mutation_ratio`` of them mutated parents, the rest crossovers of two parents. OFA
resamples a child until it meets the constraint; here infeasible children are evaluated and rank
below every feasible one (by total violation), so no loop can run without spending budget.
"""

from __future__ import annotations

import numpy as np

from nas.search.base import Evaluated, SearchAlgorithm, SearchContext, register_algorithm
from nas.search.population import anchors


@register_algorithm("evolution")
class Evolution(SearchAlgorithm):
    """OFA-style evolution (defaults are OFA's).

    Args:
        objective: the objective to optimise (default: the first); the others only constrain.
        population_size: children per generation (OFA: 100).
        parent_ratio: fraction of the population kept as parents (OFA: 0.25).
        mutation_ratio: fraction of children made by mutation; the rest by crossover (OFA: 0.5).
        mutate_prob: per-gene mutation probability (OFA: 0.1).
        max_init_evaluations: evaluations allowed to find a feasible initial population before
            giving up with an empty front (default: 10 populations).
    """

    def __init__(
        self,
        *,
        objective: str | None = None,
        population_size: int = 100,
        parent_ratio: float = 0.25,
        mutation_ratio: float = 0.5,
        mutate_prob: float = 0.1,
        max_init_evaluations: int | None = None,
    ) -> None:
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        ratios = (("parent_ratio", parent_ratio), ("mutation_ratio", mutation_ratio), ("mutate_prob", mutate_prob))
        for option, value in ratios:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{option} must be in [0, 1], got {value}")
        self.objective = objective
        self.population_size = population_size
        self.parents = max(1, round(parent_ratio * population_size))
        self.mutations = round(mutation_ratio * population_size)
        self.mutate_prob = mutate_prob
        self.max_init = 10 * population_size if max_init_evaluations is None else max_init_evaluations
        if self.max_init < 1:
            raise ValueError(f"max_init_evaluations must be >= 1, got {max_init_evaluations}")

    def run(self, ctx: SearchContext) -> None:
        """Evolve until the budget is spent; give up early if no initial subnet is feasible."""
        names = ctx.problem.names
        if self.objective is not None and self.objective not in names:
            raise KeyError(f"evolution objective {self.objective!r} is not an objective; objectives are {list(names)}")
        column = 0 if self.objective is None else names.index(self.objective)
        space, rng = ctx.space, ctx.rng

        batches = [ctx.evaluate(np.concatenate([anchors(space), space.sample_matrix(rng, self.population_size)]))]
        while (
            sum(int((b.violation == 0).sum()) for b in batches) < self.population_size
            and sum(len(b.matrix) for b in batches) < self.max_init
            and ctx.remaining > 0
        ):
            batches.append(ctx.evaluate(space.sample_matrix(rng, self.population_size)))
        population = _concat(batches)
        if not (population.violation == 0).any():
            ctx.stop_infeasible()
            return
        ctx.end_generation()

        while ctx.remaining > 0:
            order = np.lexsort((population.values[:, column], population.violation))[: self.parents]
            parents = population.matrix[order]
            p = len(parents)
            mutated = space.mutate_matrix(parents[rng.integers(0, p, self.mutations)], rng, self.mutate_prob)
            n_cross = self.population_size - self.mutations
            crossed = space.crossover_matrix(
                parents[rng.integers(0, p, n_cross)], parents[rng.integers(0, p, n_cross)], rng
            )
            children = ctx.evaluate(np.concatenate([mutated, crossed]))
            population = _concat([Evaluated(parents, population.values[order], population.violation[order]), children])
            ctx.end_generation()


def _concat(parts: list[Evaluated]) -> Evaluated:
    return Evaluated(
        np.concatenate([p.matrix for p in parts]),
        np.concatenate([p.values for p in parts]),
        np.concatenate([p.violation for p in parts]),
    )
