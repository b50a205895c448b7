"""Pareto utilities, vectorised with numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DIRECTIONS = ("min", "max")


def as_minimisation(values: npt.ArrayLike, directions: Sequence[str]) -> npt.NDArray[np.float64]:
    """Objective matrix (n, k) with every "max" column negated, so that smaller is better everywhere.

    Raises:
        ValueError: a direction other than "min"/"max", or a column count that does not match.
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(directions):
        raise ValueError(f"values must be (n, {len(directions)}), got shape {matrix.shape}")
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ValueError(f"directions must be 'min' or 'max', got {bad}")
    signs = np.array([1.0 if d == "min" else -1.0 for d in directions])
    return matrix * signs


def pareto_mask(values: npt.ArrayLike, directions: Sequence[str]) -> npt.NDArray[np.bool_]:
    """Boolean mask of the non-dominated rows.

    A row is dominated if another row is no worse in every objective and better in one.
    Duplicated non-dominated rows are all kept.
    """
    m = as_minimisation(values, directions)
    no_worse = (m[:, None, :] <= m[None, :, :]).all(axis=2)
    better = (m[:, None, :] < m[None, :, :]).any(axis=2)
    dominated = np.any(no_worse & better, axis=0)
    return np.logical_not(dominated)
