"""Regressors behind `AccuracyPredictor`, in a registry of kinds: ``mlp`` (OFA-style) and ``gbm``.

Both predict without torch: the MLP's forward pass is plain numpy, so a light process can load and
use a predictor; torch is imported only to train it.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from nas.registry import Registry

Features = npt.NDArray[np.float32]
Targets = npt.NDArray[np.float64]


class AccuracyModel(ABC):
    """A regressor from feature rows to accuracy.

    Contract: ``__init__`` takes JSON-ready keyword options (checked, ValueError naming the
    option) and does no work; `fit` learns from (n, d) features and n targets; `predict` is
    vectorised and must not need torch; `save` writes files (no pickle) into a directory and
    `load` reads them back given the same options and the metadata `save` returned.
    """

    kind: ClassVar[str]

    @abstractmethod
    def options(self) -> dict[str, Any]:
        """The constructor options, JSON-ready."""

    @abstractmethod
    def fit(self, features: Features, targets: Targets) -> None:
        """Learn from (n, d) features and n targets."""

    @abstractmethod
    def predict(self, features: Features) -> Targets:
        """Predictions for (n, d) features."""

    @abstractmethod
    def save(self, directory: Path) -> dict[str, Any]:
        """Write the model's files into `directory`; return JSON-ready metadata for `load`."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, options: Mapping[str, Any], meta: Mapping[str, Any]) -> AccuracyModel:
        """Read a model written by `save`."""


MODELS: Registry[type[AccuracyModel]] = Registry("accuracy predictor kind")


def register_model(name: str) -> Any:
    """Class decorator registering an `AccuracyModel` kind."""

    def decorator(cls: type[AccuracyModel]) -> type[AccuracyModel]:
        cls.kind = name
        return MODELS.register(name)(cls)

    return decorator


@register_model("mlp")
class MLPModel(AccuracyModel):
    """OFA's predictor network: ``hidden_layers`` x ``hidden`` ReLU layers and a linear output.

    Trained with Adam on the MSE of standardised targets. Weights use ``nn.Sequential`` keys (``0.weight``, ...),
    so OFA's published predictor loads into it (`from_ofa_weights`).

    Args:
        hidden: width of the hidden layers (OFA: 400).
        hidden_layers: number of hidden layers (OFA: 3).
        epochs: passes over the data.
        batch_size: minibatch size.
        lr: Adam learning rate (decayed with a cosine schedule).
        weight_decay: Adam weight decay.
        seed: initialisation and shuffling seed.
    """

    def __init__(
        self,
        *,
        hidden: int = 400,
        hidden_layers: int = 3,
        epochs: int = 300,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        counts = (("hidden", hidden), ("hidden_layers", hidden_layers), ("epochs", epochs), ("batch_size", batch_size))
        for option, value in counts:
            if value < 1:
                raise ValueError(f"mlp option {option} must be >= 1, got {value}")
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"mlp needs lr > 0 and weight_decay >= 0, got {lr} and {weight_decay}")
        self.hidden, self.hidden_layers, self.epochs = hidden, hidden_layers, epochs
        self.batch_size, self.lr, self.weight_decay, self.seed = batch_size, lr, weight_decay, seed
        self.weights: dict[str, npt.NDArray[np.float32]] = {}
        self.target_mean, self.target_std = 0.0, 1.0

    def options(self) -> dict[str, Any]:
        """The constructor options, JSON-ready."""
        return {
            "hidden": self.hidden, "hidden_layers": self.hidden_layers, "epochs": self.epochs,
            "batch_size": self.batch_size, "lr": self.lr, "weight_decay": self.weight_decay, "seed": self.seed,
        }  # fmt: skip

    def fit(self, features: Features, targets: Targets) -> None:
        """Learn from (n, d) features and n targets."""
        import torch
        from torch import nn

        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        y = np.asarray(targets, dtype=np.float64)
        self.target_mean, self.target_std = float(y.mean()), float(y.std()) or 1.0
        t = torch.as_tensor(((y - self.target_mean) / self.target_std).astype(np.float32))
        widths = [x.shape[1]] + [self.hidden] * self.hidden_layers
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps_per_epoch = max(1, -(-len(x) // self.batch_size))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs * steps_per_epoch)
        net.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), self.batch_size):
                idx = order[start : start + self.batch_size]
                loss = nn.functional.mse_loss(net(x[idx]).squeeze(1), t[idx])
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
        self.weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}

    def predict(self, features: Features) -> Targets:
        """Predictions for (n, d) features."""
        if not self.weights:
            raise RuntimeError("the mlp predictor is not fitted")
        h = np.asarray(features, dtype=np.float32)
        keys = sorted({k.split(".")[0] for k in self.weights}, key=int)
        for i, key in enumerate(keys):
            h = h @ self.weights[f"{key}.weight"].T + self.weights[f"{key}.bias"]
            if i < len(keys) - 1:
                np.maximum(h, 0.0, out=h)
        return h[:, 0].astype(np.float64) * self.target_std + self.target_mean

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the model's files into `directory`; return metadata for `load`."""
        from safetensors.numpy import save_file

        save_file(self.weights, str(directory / "model.safetensors"))
        return {"target_mean": self.target_mean, "target_std": self.target_std}

    @classmethod
    def load(cls, directory: Path, options: Mapping[str, Any], meta: Mapping[str, Any]) -> MLPModel:
        """Read a model written by `save`."""
        from safetensors.numpy import load_file

        model = cls(**options)
        tensors = load_file(str(directory / "model.safetensors"))
        model.weights = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}
        model.target_mean, model.target_std = float(meta["target_mean"]), float(meta["target_std"])
        return model

    @classmethod
    def from_ofa_weights(cls, weights: Mapping[str, npt.NDArray[np.float32]]) -> MLPModel:
        """An MLP holding OFA's published weights (no target scaling: OFA predicts the fraction directly)."""
        model = cls(hidden=int(weights["0.weight"].shape[0]), hidden_layers=len(weights) // 2 - 1)
        model.weights = dict(weights)
        return model


@register_model("gbm")
class GBMModel(AccuracyModel):
    """LightGBM gradient-boosted trees; saved with ``model_to_string`` (text).

    Args:
        n_estimators: boosting rounds.
        learning_rate: shrinkage.
        num_leaves: leaves per tree.
        min_child_samples: minimum samples per leaf.
        seed: LightGBM's seed.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 5,
        seed: int = 0,
    ) -> None:
        counts = (("n_estimators", n_estimators), ("num_leaves", num_leaves), ("min_child_samples", min_child_samples))
        for option, value in counts:
            if value < 1:
                raise ValueError(f"gbm option {option} must be >= 1, got {value}")
        if learning_rate <= 0:
            raise ValueError(f"gbm option learning_rate must be > 0, got {learning_rate}")
        self.n_estimators, self.learning_rate, self.num_leaves = n_estimators, learning_rate, num_leaves
        self.min_child_samples, self.seed = min_child_samples, seed
        self.booster: Any = None

    def options(self) -> dict[str, Any]:
        """The constructor options, JSON-ready."""
        return {
            "n_estimators": self.n_estimators, "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples, "seed": self.seed,
        }  # fmt: skip

    def fit(self, features: Features, targets: Targets) -> None:
        """Learn from (n, d) features and n targets."""
        import lightgbm as lgb

        params = {
            "objective": "regression", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples, "seed": self.seed, "deterministic": True,
            "num_threads": 1, "verbose": -1,
        }  # fmt: skip
        data = lgb.Dataset(np.asarray(features, dtype=np.float32), np.asarray(targets, dtype=np.float64))
        self.booster = lgb.train(params, data, num_boost_round=self.n_estimators)

    def predict(self, features: Features) -> Targets:
        """Predictions for (n, d) features."""
        if self.booster is None:
            raise RuntimeError("the gbm predictor is not fitted")
        return np.asarray(self.booster.predict(np.asarray(features, dtype=np.float32)), dtype=np.float64)

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the model's files into `directory`; return metadata for `load`."""
        (directory / "model.txt").write_text(self.booster.model_to_string())
        return {}

    @classmethod
    def load(cls, directory: Path, options: Mapping[str, Any], meta: Mapping[str, Any]) -> GBMModel:
        """Read a model written by `save`."""
        import lightgbm as lgb

        model = cls(**options)
        model.booster = lgb.Booster(model_str=(directory / "model.txt").read_text())
        return model
