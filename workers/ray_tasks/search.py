"""Search and accuracy-predictor data on Ray.

- `search_on_ray_tune`: the ``optuna`` algorithm (Optuna's NSGA-II or TPE sampler) through Ray
  Tune's ``OptunaSearch``, one Tune trial per subnet, for objectives expensive enough that the
  trials should spread over the cluster.
- `build_dataset_on_ray`: the accuracy predictor's data set measured as parallel Ray tasks, each
  loading the supernet run once and evaluating its share of the subnets.

A local Ray is started unless one is running (or RAY_ADDRESS points at a cluster).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nas.search.optuna_search import SAMPLERS, gene_distributions, make_sampler, quiet_optuna, rows_from_params
from nas.search.problem import Bound, Objective, Problem
from nas.search.result import SearchResult
from nas.space import Arch, SearchSpace
from nas.train import TrainRun, load_run
from predictors.accuracy_data import EvaluationCache, open_cache

CONSTRAINT_PREFIX = "constraint:"
VALUE_PREFIX = "value:"


def _ensure_ray(num_cpus: int | None) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, num_cpus=num_cpus)


def search_on_ray_tune(
    space: SearchSpace,
    objectives: Mapping[str, Objective],
    directions: Mapping[str, str] | None = None,
    constraints: Mapping[str, Bound] | None = None,
    budget: int = 100,
    seed: int = 0,
    sampler: str = "tpe",
    max_concurrent: int = 2,
    cpus_per_trial: float = 1.0,
    storage_path: str | Path | None = None,
    num_cpus: int | None = None,
) -> SearchResult:
    """Run the ``optuna`` search with one Ray Tune trial per subnet (trials spread over the cluster).

    Args:
        space: the search space.
        objectives: as for `nas.search.search`; they run inside the trials, so they must pickle.
        directions: as for `nas.search.search`.
        constraints: as for `nas.search.search`; passed to Optuna with ``Trial.set_constraint``.
        budget: number of trials (objective evaluations).
        seed: the sampler's seed.
        sampler: "nsga2" or "tpe".
        max_concurrent: trials running at once.
        cpus_per_trial: Ray CPUs each trial requests.
        storage_path: where Ray Tune writes its experiment (default: a temporary directory).
        num_cpus: CPUs of the local Ray started when none is running.

    Returns:
        A `SearchResult` over the completed trials, in completion order (algorithm ``"optuna-ray"``).

    Raises:
        ValueError / KeyError: the same checks as `nas.search.search`, before Ray starts.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise ValueError(f"budget must be a positive number of evaluations, got {budget!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown optuna sampler {sampler!r}; known: {list(SAMPLERS)}")
    problem = Problem.build(space, objectives, directions, constraints)
    _ensure_ray(num_cpus)
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    metrics = [VALUE_PREFIX + n for n in problem.names]
    with quiet_optuna():
        searcher = _constrained_optuna_search(
            space=gene_distributions(space),
            metric=metrics,
            mode=["min"] * len(metrics),
            sampler=make_sampler(sampler, seed, {}),
        )
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trial, problem=problem), {"cpu": cpus_per_trial}),
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent), num_samples=budget
            ),
            run_config=tune.RunConfig(
                name=f"hwnas-search-{int(time.time() * 1000)}",
                storage_path=None if storage_path is None else str(Path(storage_path).resolve()),
                verbose=0,
            ),
        )
        grid = tuner.fit()
    done: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for i in range(len(grid)):
        r = grid[i]
        if r.error is None and r.metrics and r.config and metrics[0] in r.metrics:
            done.append((r.config, r.metrics))
    done.sort(key=lambda cm: float(cm[1].get("timestamp", 0)))
    matrix = rows_from_params(space, [config for config, _ in done])
    raw = np.array([[m[k] for k in metrics] for _, m in done], dtype=np.float64).reshape(len(done), len(metrics))
    values = raw * problem.signs
    generation = np.arange(len(done), dtype=np.int64) // max(1, max_concurrent)
    return SearchResult(problem, matrix, values, generation, "optuna-ray")


def _trial(config: dict[str, Any], problem: Problem) -> dict[str, float]:
    values = problem.evaluate(rows_from_params(problem.space, [config]))
    out = {VALUE_PREFIX + n: float(v * s) for n, v, s in zip(problem.names, values[0], problem.signs, strict=True)}
    for i, c in zip(problem.constrained, problem.constraint_values(values)[0], strict=True):
        out[CONSTRAINT_PREFIX + problem.names[i]] = float(c)
    return out


def _constrained_optuna_search(**kwargs: Any) -> Any:
    """Ray Tune's OptunaSearch that also hands the trial's constraint values to Optuna (built lazily: Ray is heavy)."""
    from ray.tune.search.optuna import OptunaSearch

    class ConstrainedOptunaSearch(OptunaSearch):
        """Ray Tune's OptunaSearch that also hands the trial's constraint values to Optuna."""

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
            """Set the constraints reported by the trial, then tell Optuna as usual."""
            ot_trial = self._ot_trials.get(trial_id)
            if result and ot_trial is not None:
                for key, value in result.items():
                    if key.startswith(CONSTRAINT_PREFIX):
                        ot_trial.set_constraint(key[len(CONSTRAINT_PREFIX) :], float(value))
            super().on_trial_complete(trial_id, result, error)

    return ConstrainedOptunaSearch(**kwargs)


@lru_cache(maxsize=2)
def _load_run_cached(run_dir: str) -> TrainRun:
    return load_run(run_dir)


def _evaluate_chunk(
    run_dir: str, archs: list[dict[str, Any]], split: str, threads: int, options: dict[str, Any]
) -> list[float]:
    import torch

    from nas.train import evaluate

    torch.set_num_threads(threads)
    supernet = _load_run_cached(run_dir).supernet
    return [evaluate(supernet, arch, split, **options).top1 for arch in archs]


def evaluate_on_ray(
    run_dir: str | Path,
    archs: Sequence[Mapping[str, Any]],
    split: str = "val",
    tasks: int = 2,
    threads_per_task: int = 1,
    num_cpus: int | None = None,
    **evaluate_options: Any,
) -> np.ndarray:
    """BN-recalibrated top-1 of archs through a trained supernet, as `tasks` parallel Ray tasks.

    Args:
        run_dir: a `nas.train.train_supernet` run directory, readable by every Ray node.
        archs: the subnets.
        split: the data split.
        tasks: number of Ray tasks (each loads the run once).
        threads_per_task: torch threads (and Ray CPUs) per task.
        num_cpus: CPUs of the local Ray started when none is running.
        **evaluate_options: passed to `nas.train.evaluate`.
    """
    import ray

    if tasks < 1:
        raise ValueError(f"tasks must be >= 1, got {tasks}")
    _ensure_ray(num_cpus)
    remote = ray.remote(num_cpus=threads_per_task)(_evaluate_chunk)
    chunks = [list(c) for c in np.array_split(np.arange(len(archs)), min(tasks, max(1, len(archs))))]
    run = str(Path(run_dir).resolve())
    refs = [remote.remote(run, [dict(archs[i]) for i in c], split, threads_per_task, evaluate_options) for c in chunks]
    return np.asarray([acc for part in ray.get(refs) for acc in part], dtype=np.float64)


def build_dataset_on_ray(
    run_dir: str | Path,
    archs: Sequence[Mapping[str, Any]],
    cache: str | Path | EvaluationCache | None = None,
    split: str = "val",
    tasks: int = 2,
    save_every: int = 10,
    **options: Any,
) -> tuple[list[Arch], np.ndarray]:
    """`predictors.accuracy_data.build_dataset` with the missing subnets measured by parallel Ray tasks.

    The missing subnets go out in rounds of `save_every` (at least `tasks`), and the cache is
    written after each round, so an interrupted build keeps what it measured.

    Returns:
        The canonical archs and their top-1, in the order given; the cache holds them all.
    """
    supernet = _load_run_cached(str(Path(run_dir).resolve())).supernet
    space = supernet.space
    store = open_cache(cache, supernet, split)
    missing = store.missing(archs)
    step = max(save_every, tasks)
    for start in range(0, len(missing), step):
        part = missing[start : start + step]
        for arch, acc in zip(part, evaluate_on_ray(run_dir, part, split, tasks, **options), strict=True):
            store.put(arch, float(acc))
        store.save()
    canonical = [space.canonical(a) for a in archs]
    return canonical, store.lookup(canonical)
