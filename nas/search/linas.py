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
from nas.search.nsga2 import NSGA2Loop
from nas.search.pareto import FloatMatrix, hypervolume_min, nadir_reference, pareto_mask_min
from nas.search.population import Seen, anchors, novel_mask, survivors, top_up
from nas.search.surrogate import RidgeSurrogate, Surrogate
from nas.space import IntMatrix, SearchSpace


class Features:
    """Surrogate inputs: the subnets' encoding, plus the cheap objectives' values standardised on the evaluated set.

    Cheap objectives such as MACs or a latency table say much about accuracy; giving them to the
    surrogate as inputs lets a linear model use that from the first round.

    Args:
        space: the search space.
        cheap_values: the evaluated subnets' cheap objective values (the standardisation's basis);
            None leaves them out of the features.
    """

    def __init__(self, space: SearchSpace, cheap_values: FloatMatrix | None) -> None:
        self.space = space
        self.with_cheap = cheap_values is not None and cheap_values.shape[1] > 0
        if cheap_values is not None and self.with_cheap:
            std = cheap_values.std(axis=0)
            self.center, self.scale = cheap_values.mean(axis=0), np.where(std > 0, std, 1.0)

    def __call__(self, canon: IntMatrix, cheap_values: FloatMatrix) -> npt.NDArray[np.float32]:
        """Features of canonical rows, given their cheap objective values."""
        encoded = self.space.encode_matrix(canon)
        if not self.with_cheap:
            return encoded
        return np.hstack([encoded, ((cheap_values - self.center) / self.scale).astype(np.float32)])


def _predicted(
    models: Sequence[Surrogate | None], features: Features, ctx: SearchContext, genes: IntMatrix
) -> tuple[IntMatrix, FloatMatrix, npt.NDArray[np.float64]]:
    """Surrogate values (minimisation form; exact for the cheap objectives) and their constraint violation."""
    problem = ctx.problem
    canon = ctx.space.canonicalize_matrix(genes)
    cheap = [j for j, m in enumerate(models) if m is None]
    guess = problem.evaluate(canon, cheap) * problem.signs
    inputs = features(canon, guess[:, cheap])
    for j, model in enumerate(models):
        if model is not None:
            guess[:, j] = model.predict(inputs)
    return genes, guess, problem.violation(guess * problem.signs)


ACQUISITIONS = ("hypervolume", "crowding")


def hypervolume_picks(candidates: FloatMatrix, known: FloatMatrix, n: int) -> npt.NDArray[np.int64]:
    """Up to `n` candidate rows, picked greedily by how much hypervolume each adds to the known rows.

    Both matrices are minimisation-form objective values of feasible subnets (the candidates'
    predicted, the known ones measured). The reference is the known rows' nadir pushed out by a
    tenth of their range. Stops early when no candidate adds anything.
    """
    reference = nadir_reference(known)
    front = known[pareto_mask_min(known)]
    base = hypervolume_min(front, reference)
    picks: list[int] = []
    for _ in range(min(n, len(candidates))):
        gains = np.array([hypervolume_min(np.vstack([front, row]), reference) for row in candidates]) - base
        gains[picks] = -np.inf
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            break
        picks.append(best)
        front = np.vstack([front, candidates[best]])
        base += gains[best]
    return np.asarray(picks, dtype=np.int64)


@register_algorithm("linas")
class LINAS(SearchAlgorithm):
    """LINAS: NSGA-II on refitted surrogates picks every batch of real evaluations.

    Args:
        initial: random subnets (plus the smallest and the largest) evaluated before the first fit
            (default: a twentieth of the budget, at least 10 and at most 100).
        batch_size: real evaluations per round.
        inner_population: population of the inner NSGA-II.
        inner_generations: generations of the inner NSGA-II per round.
        surrogate: zero-argument factory of a `Surrogate` (default: ridge regression).
        cheap_features: give the surrogates the cheap objectives' values as inputs too (`Features`).
        acquisition: how a batch is picked from the inner search's final population: "hypervolume"
            (greedily, by the hypervolume each predicted subnet adds to the measured front; up to 3
            objectives, the NSGA-II order beyond) or "crowding" (NSGA-II order: rank, then
            crowding distance).
    """

    def __init__(
        self,
        *,
        initial: int | None = None,
        batch_size: int = 10,
        inner_population: int = 100,
        inner_generations: int = 30,
        surrogate: Callable[[], Surrogate] = RidgeSurrogate,
        cheap_features: bool = True,
        acquisition: str = "hypervolume",
    ) -> None:
        counts = (
            ("batch_size", batch_size),
            ("inner_population", inner_population),
            ("inner_generations", inner_generations),
        )
        for option, value in counts:
            if value < 1:
                raise ValueError(f"{option} must be >= 1, got {value}")
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
        if initial is not None and initial < 2:
            raise ValueError(f"initial must be >= 2, got {initial}")
        self.initial = initial
        self.batch_size = batch_size
        self.inner_population = inner_population
        self.inner_generations = inner_generations
        self.surrogate = surrogate
        self.cheap_features = cheap_features
        self.acquisition = acquisition

    def run(self, ctx: SearchContext) -> None:
        """Run rounds until the budget of real evaluations is spent."""
        space, rng, seen = ctx.space, ctx.rng, Seen()
        n_initial = self.initial or min(100, max(10, ctx.budget // 20))
        start = anchors(space, every_resolution=False)
        seen.add(start)
        first = ctx.evaluate(np.concatenate([start, top_up(space, seen, start[:0], n_initial - len(start), rng)]))
        seen.add(first.matrix)
        matrix, values, violation = first.matrix, first.values, first.violation
        ctx.end_generation()
        inner = NSGA2Loop(space, self.inner_population, crossover_prob=0.9, mutate_prob=0.1, local=0.0)
        cheap = [j for j in range(values.shape[1]) if ctx.problem.vectorised(j)]
        while ctx.remaining > 0:
            features = Features(space, values[:, cheap] if self.cheap_features else None)
            inputs = features(matrix, values[:, cheap])
            models = [None if j in cheap else self.surrogate() for j in range(values.shape[1])]
            for j, model in enumerate(models):
                if model is not None:
                    model.fit(inputs, values[:, j])

            best = matrix[survivors(values, violation, self.inner_population)]
            seed_rows = np.concatenate([best, space.sample_matrix(rng, max(0, self.inner_population - len(best)))])
            final, guess, guess_violation = inner.run(
                partial(_predicted, models, features, ctx), seed_rows, rng, generations=self.inner_generations
            )
            order = survivors(guess, guess_violation, len(final))
            if self.acquisition == "hypervolume" and values.shape[1] <= 3 and (violation == 0).any():
                novel = order[novel_mask(space, seen, final[order])]
                feasible = novel[guess_violation[novel] == 0]
                picks = feasible[hypervolume_picks(guess[feasible], values[violation == 0], self.batch_size)]
                order = np.concatenate([picks, order[~np.isin(order, picks)]])
            batch = top_up(space, seen, final[order], min(self.batch_size, ctx.remaining), rng)
            out = ctx.evaluate(batch)
            seen.add(out.matrix)
            matrix = np.concatenate([matrix, out.matrix])
            values = np.concatenate([values, out.values])
            violation = np.concatenate([violation, out.violation])
            ctx.end_generation()
