"""A small surrogate model for predictor-guided search: ridge regression on one-hot features.

`nas` cannot use the predictors package (the dependency points the other way), so `linas` brings
its own light model; callers can pass any object with the `Surrogate` methods instead.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

Features = npt.NDArray[np.float32]


class Surrogate(Protocol):
    """A regressor on `SearchSpace.encode` features."""

    def fit(self, features: Features, targets: npt.NDArray[np.float64]) -> None:
        """Fit on (n, d) features and n targets."""

    def predict(self, features: Features) -> npt.NDArray[np.float64]:
        """Predict n targets for (n, d) features."""


class RidgeSurrogate:
    """Ridge regression with an intercept, solved in closed form.

    Args:
        alpha: L2 penalty on the weights (features are one-hot, so one scale fits all).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self.weights = np.zeros(0)
        self.intercept = 0.0

    def fit(self, features: Features, targets: npt.NDArray[np.float64]) -> None:
        """Fit the weights."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(targets, dtype=np.float64)
        x_mean, y_mean = x.mean(axis=0), float(y.mean())
        xc = x - x_mean
        gram = xc.T @ xc + self.alpha * np.eye(x.shape[1])
        self.weights = np.linalg.solve(gram, xc.T @ (y - y_mean))
        self.intercept = y_mean - float(x_mean @ self.weights)

    def predict(self, features: Features) -> npt.NDArray[np.float64]:
        """Predictions for (n, d) features."""
        return np.asarray(features, dtype=np.float64) @ self.weights + self.intercept
