"""NSGA-II with Deb's constraint domination, vectorised over the population."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from nas.search.base import SearchAlgorithm, SearchContext, register_algorithm
from nas.search.pareto import FloatMatrix
from nas.search.population import Seen, anchors, rank_and_crowding, survivors, top_up, tournament
from nas.space import IntMatrix, SearchSpace

SELECTIONS = ("crowding", "hypervolume")

EvaluateFn = Callable[[IntMatrix], tuple[IntMatrix, FloatMatrix, npt.NDArray[np.float64]]]
"""Genotypes -> (the genotypes actually evaluated, a prefix; minimisation-form values; violation)."""


def offspring(
    space: SearchSpace,
    matrix: IntMatrix,
    values: FloatMatrix,
    violation: npt.NDArray[np.float64],
    n: int,
    rng: np.random.Generator,
    crossover_prob: float,
    mutate_prob: float,
    local: float,
    neighbours: int = 0,
) -> IntMatrix:
    """`n` child genotypes: tournament-selected parents, uniform crossover (with probability), mutation.

    With `neighbours` > 0 each first parent mates with one of its `neighbours` nearest rows in
    min-max normalised objective space (mating restriction) instead of a second tournament winner:
    parents from far-apart ends of the front mostly make children that neither end dominates.
    """
    ranks, crowd = rank_and_crowding(values, violation)
    first_index = tournament(ranks, crowd, n, rng)
    first = matrix[first_index]
    if neighbours and len(values) > 1:
        second = matrix[nearest(values, neighbours)[first_index, rng.integers(0, min(neighbours, len(values) - 1), n)]]
    else:
        second = matrix[tournament(ranks, crowd, n, rng)]
    crossed = space.crossover_matrix(first, second, rng, canonical=False)
    children = np.where((rng.random(n) < crossover_prob)[:, None], crossed, first)
    return space.mutate_matrix(children, rng, mutate_prob, local=local, canonical=False)


def nearest(values: FloatMatrix, k: int) -> npt.NDArray[np.int64]:
    """For every row, the indices of its `k` nearest other rows (min-max normalised, Euclidean), nearest first."""
    low, high = values.min(axis=0), values.max(axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    distance = np.linalg.norm(scaled[:, None, :] - scaled[None, :, :], axis=2)
    np.fill_diagonal(distance, np.inf)
    return np.argsort(distance, axis=1, kind="stable")[:, : min(k, len(values) - 1)]


class NSGA2Loop:
    """One NSGA-II run over any evaluation function (used by `nsga2` and by `linas` on its surrogates).

    The population is held as genotypes (`SearchSpace.random_genes`): the genes of skipped blocks
    are kept, so a block that becomes active again gets back what it had.

    Args:
        space: the search space.
        population_size: survivors per generation and children per generation.
        crossover_prob: probability that a child is a crossover of two parents.
        mutate_prob: per-gene mutation probability.
        local: share of mutations that step to a neighbouring choice (`SearchSpace.mutate_matrix`).
        by_hypervolume: cut the last front by hypervolume contribution instead of crowding distance
            (`common.survivors`).
        offspring_size: children per generation (default: `population_size`); fewer make the
            selection act more often per evaluation.
        neighbours: mate each parent with one of its nearest rows in objective space (0: with a
            second tournament winner; see `offspring`).
    """

    def __init__(
        self,
        space: SearchSpace,
        population_size: int,
        crossover_prob: float,
        mutate_prob: float,
        local: float,
        by_hypervolume: bool = False,
        offspring_size: int | None = None,
        neighbours: int = 0,
    ) -> None:
        self.space = space
        self.population_size = population_size
        self.offspring_size = offspring_size or population_size
        self.crossover_prob = crossover_prob
        self.mutate_prob = mutate_prob
        self.local = local
        self.by_hypervolume = by_hypervolume
        self.neighbours = neighbours

    def run(
        self,
        evaluate: EvaluateFn,
        initial: IntMatrix,
        rng: np.random.Generator,
        generations: int | None = None,
        seen: Seen | None = None,
        end_generation: Callable[[], bool] | None = None,
    ) -> tuple[IntMatrix, FloatMatrix, npt.NDArray[np.float64]]:
        """Evolve from `initial` for `generations` (or until `end_generation` returns False).

        Returns:
            The final population: rows, minimisation-form values, violation.
        """
        matrix, values, violation = evaluate(initial)
        keep = survivors(values, violation, self.population_size, self.by_hypervolume)
        matrix, values, violation = matrix[keep], values[keep], violation[keep]
        generation = 0
        while (generations is None or generation < generations) and (end_generation is None or end_generation()):
            children = offspring(
                self.space, matrix, values, violation, self.offspring_size, rng, self.crossover_prob,
                self.mutate_prob, self.local, self.neighbours,
            )  # fmt: skip
            if seen is not None:
                children = top_up(self.space, seen, children, self.offspring_size, rng)
            c_matrix, c_values, c_violation = evaluate(children)
            if not len(c_matrix):
                break
            matrix = np.concatenate([matrix, c_matrix])
            values = np.concatenate([values, c_values])
            violation = np.concatenate([violation, c_violation])
            keep = survivors(values, violation, self.population_size, self.by_hypervolume)
            matrix, values, violation = matrix[keep], values[keep], violation[keep]
            generation += 1
        return matrix, values, violation


@register_algorithm("nsga2")
class NSGA2(SearchAlgorithm):
    """NSGA-II: non-dominated sorting, crowding distance, binary tournaments, constraint domination.

    The initial population holds smallest and largest subnets (at most half of it, spread over the
    resolutions) and random ones. Children already evaluated are replaced by new subnets where the
    space allows. The defaults were chosen for sample efficiency
    (BENCHMARKS.md, bench.search): a small population of genotypes, half as many children per
    generation, half of the mutations local, (2 objectives) the last front cut by hypervolume
    contribution, and mating between neighbours on the front.

    Args:
        population_size: survivors per generation.
        offspring_size: children per generation (default: half the population).
        crossover_prob: probability that a child is a crossover of two parents.
        mutate_prob: per-gene mutation probability (default: 2 / number of genes).
        local: share of mutations that step to a neighbouring choice instead of redrawing the gene.
        selection: how the front that does not fit whole into the next population is cut:
            "hypervolume" (greedy hypervolume contribution, SMS-EMOA's rule; 2 objectives,
            crowding otherwise) or "crowding" (classic NSGA-II).
        neighbours: each parent mates with one of its this many nearest population members in
            objective space; 0 for classic NSGA-II mating (two tournament winners).
    """

    def __init__(
        self,
        *,
        population_size: int = 12,
        offspring_size: int | None = None,
        crossover_prob: float = 0.9,
        mutate_prob: float | None = None,
        local: float = 0.5,
        selection: str = "hypervolume",
        neighbours: int = 3,
    ) -> None:
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if offspring_size is not None and offspring_size < 1:
            raise ValueError(f"offspring_size must be >= 1, got {offspring_size}")
        for option, value in (("crossover_prob", crossover_prob), ("mutate_prob", mutate_prob), ("local", local)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{option} must be in [0, 1], got {value}")
        if neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {neighbours}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        self.population_size = population_size
        self.offspring_size = offspring_size or max(1, population_size // 2)
        self.crossover_prob = crossover_prob
        self.mutate_prob = mutate_prob
        self.local = local
        self.selection = selection
        self.neighbours = neighbours

    def run(self, ctx: SearchContext) -> None:
        """Evolve until the budget is spent."""
        space, rng, seen = ctx.space, ctx.rng, Seen()

        def evaluate(genes: IntMatrix) -> tuple[IntMatrix, FloatMatrix, npt.NDArray[np.float64]]:
            out = ctx.evaluate(genes)
            seen.add(out.matrix)
            return genes[: len(out.matrix)], out.values, out.violation

        def next_generation() -> bool:
            ctx.end_generation()
            return ctx.remaining > 0

        start, n_anchors = anchors(space), self.population_size // 2  # population_size >= 2
        if len(start) > n_anchors:  # e.g. 50 anchors of w1.0's 25 resolutions
            start = start[np.unique(np.linspace(0, len(start) - 1, n_anchors).round().astype(np.int64))]
        taken = Seen()
        taken.add(start)
        fill = top_up(space, taken, space.random_genes(rng, 0), self.population_size - len(start), rng)
        initial = np.concatenate([start, fill])
        mutate_prob = 2 / len(space.gene_sizes) if self.mutate_prob is None else self.mutate_prob
        loop = NSGA2Loop(
            space, self.population_size, self.crossover_prob, mutate_prob, self.local,
            by_hypervolume=self.selection == "hypervolume", offspring_size=self.offspring_size,
            neighbours=self.neighbours,
        )  # fmt: skip
        loop.run(evaluate, initial, rng, seen=seen, end_generation=next_generation)
