"""The validated statement of a search: objectives, directions and constraints over a space.

An objective is a vectorised callable ``f(archs: list[dict]) -> array of n floats``. When it also
has ``predict_matrix(matrix) -> array`` (and, if it has a ``space`` attribute, that space equals
the search space), the search calls that on choice-index matrices instead, so a predictor-based
search never builds arch dicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from nas.search.pareto import DIRECTIONS, FloatMatrix
from nas.space import IntMatrix, SearchSpace

Objective = Callable[[list[Any]], Any]
Bound = float | tuple[float | None, float | None]


@dataclass(frozen=True)
class Problem:
    """Objectives (in order), their directions and their (low, high) bounds.

    Build it with `Problem.build`, which checks every input.

    Attributes:
        space: the search space.
        names: objective names, in the order of value columns.
        objectives: the callables, by name.
        directions: "min" or "max" per objective, in `names` order.
        lows: lower bound per objective (-inf when none).
        highs: upper bound per objective (+inf when none).
    """

    space: SearchSpace
    names: tuple[str, ...]
    objectives: Mapping[str, Objective]
    directions: tuple[str, ...]
    lows: npt.NDArray[np.float64]
    highs: npt.NDArray[np.float64]

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        objectives: Mapping[str, Objective],
        directions: Mapping[str, str] | None = None,
        constraints: Mapping[str, Bound] | None = None,
    ) -> Problem:
        """Check and normalise the user's objectives, directions and constraints.

        A constraint that is a number bounds the objective on its bad side: an upper bound for a
        "min" objective, a lower bound for a "max" one. A ``(low, high)`` pair (either may be None)
        bounds both sides. Objectives without a direction are minimised.

        Raises:
            ValueError: no objectives, a non-callable objective, a bad direction or bound.
            KeyError: a name in `directions` or `constraints` that is not an objective.
        """
        if not objectives:
            raise ValueError("objectives must name at least one objective")
        names = tuple(objectives)
        for name, f in objectives.items():
            if not callable(f) and not hasattr(f, "predict_matrix"):
                raise ValueError(f"objective {name!r} must be callable on a list of archs, got {type(f).__name__}")
        directions = dict(directions or {})
        constraints = dict(constraints or {})
        for field, given in (("directions", directions), ("constraints", constraints)):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise KeyError(f"{field} name unknown objective(s) {unknown}; objectives are {list(names)}")
        dirs = tuple(directions.get(n, "min") for n in names)
        for name, d in zip(names, dirs, strict=True):
            if d not in DIRECTIONS:
                raise ValueError(f"direction of {name!r} must be 'min' or 'max', got {d!r}")
        lows = np.full(len(names), -np.inf)
        highs = np.full(len(names), np.inf)
        for i, (name, d) in enumerate(zip(names, dirs, strict=True)):
            if name in constraints:
                lows[i], highs[i] = _bound(name, d, constraints[name])
        return cls(space, names, dict(objectives), dirs, lows, highs)

    @property
    def signs(self) -> npt.NDArray[np.float64]:
        """+1 for "min" objectives, -1 for "max" ones (values times signs is minimisation form)."""
        return np.array([1.0 if d == "min" else -1.0 for d in self.directions])

    @property
    def constrained(self) -> list[int]:
        """Indices of the objectives that have a bound."""
        return [i for i in range(len(self.names)) if np.isfinite(self.lows[i]) or np.isfinite(self.highs[i])]

    def vectorised(self, i: int) -> bool:
        """Whether objective `i` is called on the int matrix (``predict_matrix``): a cheap predictor."""
        f = self.objectives[self.names[i]]
        return hasattr(f, "predict_matrix") and getattr(f, "space", self.space) == self.space

    def evaluate(self, matrix: IntMatrix, columns: Sequence[int] | None = None) -> FloatMatrix:
        """Objective values (n, k) of the rows of a choice-index matrix, in the user's form.

        Args:
            matrix: canonical choice-index rows.
            columns: evaluate only these objectives (the other columns are NaN); default all.

        Raises:
            ValueError: an objective returned the wrong number of values.
        """
        n = len(matrix)
        out = np.full((n, len(self.names)), np.nan, dtype=np.float64)
        archs: list[Any] | None = None
        for i in range(len(self.names)) if columns is None else columns:
            name = self.names[i]
            if self.vectorised(i):
                raw = self.objectives[name].predict_matrix(matrix)  # type: ignore[attr-defined]
            else:
                archs = self.space.from_matrix(matrix) if archs is None else archs
                raw = self.objectives[name](archs)
            column = np.asarray(raw, dtype=np.float64).reshape(-1)
            if column.shape != (n,):
                raise ValueError(f"objective {name!r} returned {column.size} values for {n} archs")
            out[:, i] = column
        return out

    def violation(self, values: FloatMatrix) -> npt.NDArray[np.float64]:
        """Total constraint violation per row, each objective's excess relative to its bound's scale.

        Zero means feasible. NaN values count as infinitely infeasible.
        """
        scale = np.maximum(np.abs(np.where(np.isfinite(self.highs), self.highs, self.lows)), 1e-12)
        scale = np.where(np.isfinite(scale), scale, 1.0)
        excess = np.maximum(self.lows - values, 0.0) + np.maximum(values - self.highs, 0.0)
        total = (excess / scale).sum(axis=1)
        return np.where(np.isnan(values).any(axis=1), np.inf, total)

    def constraint_values(self, values: FloatMatrix) -> FloatMatrix:
        """Optuna-style constraint values (n, number of bounded objectives): <= 0 means satisfied.

        Each entry is the signed distance past the bound (negative inside), NaN rows count as +inf.
        """
        idx = self.constrained
        v = values[:, idx]
        out = np.maximum(self.lows[idx] - v, v - self.highs[idx])
        return np.where(np.isnan(out), np.inf, out)

    def describe_bound(self, i: int) -> str:
        """The bound of objective i as text, e.g. ``lat <= 25`` or ``0.1 <= acc <= 0.9``."""
        low, high, name = self.lows[i], self.highs[i], self.names[i]
        if np.isfinite(low) and np.isfinite(high):
            return f"{low:g} <= {name} <= {high:g}"
        return f"{name} <= {high:g}" if np.isfinite(high) else f"{name} >= {low:g}"


def _bound(name: str, direction: str, value: Bound) -> tuple[float, float]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"constraint on {name!r} must be a number or (low, high), got {value!r}")
        low = -math.inf if value[0] is None else _number(name, value[0])
        high = math.inf if value[1] is None else _number(name, value[1])
        if low > high:
            raise ValueError(f"constraint on {name!r} has low {low} > high {high}")
        return low, high
    bound = _number(name, value)
    return (-math.inf, bound) if direction == "min" else (bound, math.inf)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"constraint on {name!r} must be a number or (low, high), got {value!r}")
    out = float(value)
    if math.isnan(out):
        raise ValueError(f"constraint on {name!r} must not be NaN")
    return out
