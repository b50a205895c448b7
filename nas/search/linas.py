"""Predictor-guided search for expensive objectives, after Intel's LINAS (Cummings et al., 2022).

Rounds of: evaluate a batch for real -> refit one surrogate per expensive objective on the
subnets' features -> run NSGA-II on the surrogates -> evaluate the best new subnets of its final
population. Objectives that are vectorised predictors (``predict_matrix``: MACs, lookup tables)
are cheap: the inner search calls them directly instead of a surrogate. The budget counts real
evaluations only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import numpy.typing as npt

from nas.search.base import SearchAlgorithm, SearchContext, register_algorithm
from nas.search.common import Seen, anchors, survivors, top_up
from nas.search.nsga2 import NSGA2Loop
from nas.search.pareto import FloatMatrix
from nas.search.surrogate import RidgeSurrogate, Surrogate
from nas.space import IntMatrix


def _predicted(
    models: Sequence[Surrogate | None], ctx: SearchContext, genes: IntMatrix
) -> tuple[IntMatrix, FloatMatrix, npt.NDArray[np.float64]]:
    """Surrogate values (minimisation form; exact for the cheap objectives) and their constraint violation."""
    problem = ctx.problem
    canon = ctx.space.canonicalize_matrix(genes)
    cheap = [j for j, m in enumerate(models) if m is None]
    guess = problem.evaluate(canon, cheap) * problem.signs
    features = ctx.space.encode_matrix(canon)
    for j, model in enumerate(models):
        if model is not None:
            guess[:, j] = model.predict(features)
    return genes, guess, problem.violation(guess * problem.signs)


@register_algorithm("linas")
class LINAS(SearchAlgorithm):
    """LINAS: NSGA-II on refitted surrogates picks every batch of real evaluations.

    Args:
        initial: random subnets (plus the smallest and the largest) evaluated before the first fit
            (default: a tenth of the budget, at least 10 and at most 100).
        batch_size: real evaluations per round.
        inner_population: population of the inner NSGA-II.
        inner_generations: generations of the inner NSGA-II per round.
        surrogate: zero-argument factory of a `Surrogate` (default: ridge regression).
    """

    def __init__(
        self,
        *,
        initial: int | None = None,
        batch_size: int = 10,
        inner_population: int = 100,
        inner_generations: int = 30,
        surrogate: Callable[[], Surrogate] = RidgeSurrogate,
    ) -> None:
        counts = (
            ("batch_size", batch_size),
            ("inner_population", inner_population),
            ("inner_generations", inner_generations),
        )
        for option, value in counts:
            if value < 1:
                raise ValueError(f"{option} must be >= 1, got {value}")
        if initial is not None and initial < 2:
            raise ValueError(f"initial must be >= 2, got {initial}")
        self.initial = initial
        self.batch_size = batch_size
        self.inner_population = inner_population
        self.inner_generations = inner_generations
        self.surrogate = surrogate

    def run(self, ctx: SearchContext) -> None:
        """Run rounds until the budget of real evaluations is spent."""
        space, rng, seen = ctx.space, ctx.rng, Seen()
        n_initial = self.initial or min(100, max(10, ctx.budget // 10))
        start = anchors(space, every_resolution=False)
        seen.add(start)
        first = ctx.evaluate(np.concatenate([start, top_up(space, seen, start[:0], n_initial - len(start), rng)]))
        seen.add(first.matrix)
        matrix, values, violation = first.matrix, first.values, first.violation
        ctx.end_generation()
        inner = NSGA2Loop(space, self.inner_population, crossover_prob=0.9, mutate_prob=0.1, local=0.0)
        while ctx.remaining > 0:
            features = space.encode_matrix(matrix)
            models = [None if ctx.problem.vectorised(j) else self.surrogate() for j in range(values.shape[1])]
            for j, model in enumerate(models):
                if model is not None:
                    model.fit(features, values[:, j])

            best = matrix[survivors(values, violation, self.inner_population)]
            seed_rows = np.concatenate([best, space.sample_matrix(rng, max(0, self.inner_population - len(best)))])
            final, guess, guess_violation = inner.run(
                partial(_predicted, models, ctx), seed_rows, rng, generations=self.inner_generations
            )
            ranked = final[survivors(guess, guess_violation, len(final))]
            batch = top_up(space, seen, ranked, min(self.batch_size, ctx.remaining), rng)
            out = ctx.evaluate(batch)
            seen.add(out.matrix)
            matrix = np.concatenate([matrix, out.matrix])
            values = np.concatenate([values, out.values])
            violation = np.concatenate([violation, out.violation])
            ctx.end_generation()
