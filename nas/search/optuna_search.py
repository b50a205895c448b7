"""Optuna's samplers (NSGA-II, TPE) behind the search interface, asked and told in batches.

Every gene of a choice-index row is one categorical parameter (`gene_params`), so the vectorised
objectives see one batch of subnets at a time. Constraints are set per trial with
``Trial.set_constraint`` (Optuna 5 deprecates the samplers' ``constraints_func`` in its favour);
both samplers read them (<= 0 is feasible).
Optuna is imported when the algorithm runs, not when `nas.search` is imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.search.base import SearchAlgorithm, SearchContext, register_algorithm
from nas.search.pareto import FloatMatrix
from nas.search.problem import Problem
from nas.space import IntMatrix, SearchSpace

if TYPE_CHECKING:
    import optuna

SAMPLERS = ("nsga2", "tpe")


def gene_params(space: SearchSpace) -> list[tuple[str, int]]:
    """(parameter name, number of choices) for every column of the space's choice-index matrix."""
    names = (
        [f"ks{j}" for j in range(space.n_blocks)]
        + [f"e{j}" for j in range(space.n_blocks)]
        + [f"d{s}" for s in range(space.n_stages)]
        + ["r"]
    )
    return list(zip(names, space.gene_sizes.tolist(), strict=True))


def gene_distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna's categorical distribution of every gene (choice indices)."""
    import optuna

    return {name: optuna.distributions.CategoricalDistribution(list(range(n))) for name, n in gene_params(space)}


def rows_from_params(space: SearchSpace, params: Sequence[Mapping[str, Any]]) -> IntMatrix:
    """Canonical choice-index rows from Optuna parameter dicts (see `gene_params`)."""
    names = [name for name, _ in gene_params(space)]
    matrix = np.array([[int(p[n]) for n in names] for p in params], dtype=np.int64).reshape(len(params), len(names))
    return space.canonicalize_matrix(matrix)


def make_sampler(kind: str, seed: int, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    """An Optuna sampler of `kind` ("nsga2" or "tpe").

    Raises:
        ValueError: unknown kind.
    """
    import optuna

    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **options)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **options)
    raise ValueError(f"unknown optuna sampler {kind!r}; known: {list(SAMPLERS)}")


def tell_batch(study: optuna.Study, trials: Sequence[optuna.Trial], problem: Problem, values: FloatMatrix) -> None:
    """Tell Optuna the values (user's form) of a batch of trials, with their constraint values."""
    minimised = values * problem.signs
    for trial, row, cons in zip(trials, minimised, problem.constraint_values(values), strict=True):
        for i, c in zip(problem.constrained, cons, strict=True):
            trial.set_constraint(problem.names[i], float(c))
        finite = np.where(np.isfinite(row), row, np.finfo(np.float64).max)
        study.tell(trial, [float(v) for v in finite])


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial INFO logging (and its experimental warnings) inside the block."""
    import warnings

    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


@register_algorithm("optuna")
class OptunaSearch(SearchAlgorithm):
    """Optuna's NSGAIISampler or TPESampler, asked and told in batches.

    Args:
        sampler: "nsga2" or "tpe".
        batch_size: trials asked before the objectives run on them (default: the NSGA-II
            population size, 50, or 10 for TPE).
        sampler_options: more keyword arguments for the Optuna sampler (e.g. ``population_size``).
    """

    def __init__(
        self, *, sampler: str = "nsga2", batch_size: int | None = None, sampler_options: Mapping[str, Any] | None = None
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown optuna sampler {sampler!r}; known: {list(SAMPLERS)}")
        options = dict(sampler_options or {})
        default_batch = int(options.get("population_size", 50)) if sampler == "nsga2" else 10
        self.batch_size = default_batch if batch_size is None else batch_size
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.options = options

    def run(self, ctx: SearchContext) -> None:
        """Ask, evaluate and tell batches of trials until the budget is spent."""
        import optuna

        problem, space = ctx.problem, ctx.space
        distributions = gene_distributions(space)
        seed = int(ctx.rng.integers(2**31 - 1))
        with quiet_optuna():
            study = optuna.create_study(
                directions=["minimize"] * len(problem.names),
                sampler=make_sampler(self.sampler, seed, self.options),
            )
            while ctx.remaining > 0:
                trials = [study.ask(distributions) for _ in range(min(self.batch_size, ctx.remaining))]
                out = ctx.evaluate(rows_from_params(space, [t.params for t in trials]))
                tell_batch(study, trials, problem, out.values * problem.signs)
                ctx.end_generation()
