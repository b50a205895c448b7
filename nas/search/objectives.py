"""Ready-made objectives from the analytic cost model, with the search's matrix fast path."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from nas.cost import cost_tables, macs_matrix, params_matrix
from nas.space import IntMatrix, SearchSpace


class CostObjective:
    """MACs or parameters of subnets, divided by `scale` (e.g. 1e6 for millions); vectorised.

    Args:
        space: the search space.
        what: "macs" or "params".
        scale: the unit (1 = plain counts).
    """

    _FUNCTIONS: Mapping[str, Callable[[SearchSpace, IntMatrix], npt.NDArray[np.int64]]] = {
        "macs": macs_matrix,
        "params": params_matrix,
    }

    def __init__(self, space: SearchSpace, what: str = "macs", scale: float = 1.0) -> None:
        if what not in self._FUNCTIONS:
            raise ValueError(f"unknown cost {what!r}; choose from {sorted(self._FUNCTIONS)}")
        self.space = space
        self.what = what
        self.scale = scale

    def predict_matrix(self, matrix: IntMatrix) -> npt.NDArray[np.float64]:
        """The cost of each row of a choice-index matrix."""
        return self._FUNCTIONS[self.what](self.space, matrix) / self.scale

    def __call__(self, archs: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
        """The cost of each arch."""
        return self.predict_matrix(self.space.to_matrix(archs))

    def additive_terms(self, space: SearchSpace) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The fixed and per-block terms of the cost (see `nas.search.feasibility.AdditiveObjective`)."""
        t = cost_tables(space)
        nr = len(space.resolutions)
        if self.what == "macs":
            fixed, block = t.fixed_macs, t.block_macs
        else:  # parameters do not depend on the resolution
            fixed, block = np.full(nr, t.fixed_params), np.broadcast_to(t.block_params, (nr, *t.block_params.shape))
        return fixed / self.scale, block / self.scale
