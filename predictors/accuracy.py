"""Accuracy predictors: a subnet's top-1 from its encoding, fast enough to score 50,000 subnets at once.

>>> from predictors.accuracy import AccuracyPredictor
>>> pred = AccuracyPredictor(space, kind="mlp").fit(archs, top1)
>>> pred.predict(space.sample(rng, 10)); pred.evaluate(test_archs, test_top1).kendall_tau
>>> pred.save("runs/fm/acc_predictor"); AccuracyPredictor.load("runs/fm/acc_predictor")

An `AccuracyPredictor` is a search objective as it stands: it is callable on a list of archs and
has ``predict_matrix`` for choice-index matrices (see `nas.search.problem`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nas.space import IntMatrix, SearchSpace
from nas.spaces import get_space
from predictors.accuracy_models import MODELS, AccuracyModel, MLPModel
from predictors.accuracy_ofa import encode_ofa_matrix, read_ofa_state_dict

ENCODINGS = ("space", "ofa")
META_FILE = "predictor.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PredictorScore:
    """Quality of a predictor on held-out subnets.

    Attributes:
        rmse: root mean squared error, in the targets' unit (top-1 as a fraction).
        kendall_tau: rank correlation between predictions and truth (what a search relies on); None
            when either side is constant (no ranking to compare; NaN would not survive JSON storage).
        n: number of subnets.
    """

    rmse: float
    kendall_tau: float | None
    n: int


def space_to_json(space: SearchSpace) -> dict[str, Any]:
    """The space as the preset name, its choices and its I/O, enough to rebuild it with `space_from_json`."""
    return {
        "name": space.name,
        "kernel_sizes": list(space.kernel_sizes),
        "expand_ratios": list(space.expand_ratios),
        "depths": list(space.depths),
        "resolutions": list(space.resolutions),
        "in_channels": space.backbone.in_channels,
        "num_classes": space.backbone.num_classes,
    }


def space_from_json(data: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a space written by `space_to_json` (KeyError for an unknown preset)."""
    return get_space(
        data["name"],
        in_channels=data["in_channels"],
        num_classes=data["num_classes"],
        kernel_sizes=data["kernel_sizes"],
        expand_ratios=data["expand_ratios"],
        depths=data["depths"],
        resolutions=data["resolutions"],
    )


class AccuracyPredictor:
    """Predicts top-1 (a fraction) of subnets of one space.

    Args:
        space: the space whose subnets it scores.
        kind: a registered model kind (`list_kinds()`): "mlp" (OFA-style 3x400 ReLU) or "gbm" (LightGBM).
        encoding: "space" (`SearchSpace.encode`) or "ofa" (OFA's 128 features, `encode_ofa`).
        **options: the model's options (see `MLPModel`, `GBMModel`).

    Raises:
        KeyError: unknown kind (listing the known ones).
        ValueError: unknown encoding, bad option, or a space OFA's encoding cannot describe.
    """

    def __init__(self, space: SearchSpace, kind: str = "mlp", encoding: str = "space", **options: Any) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; known: {list(ENCODINGS)}")
        cls = MODELS.get(kind)
        try:
            self.model: AccuracyModel = cls(**options)
        except TypeError as err:
            raise ValueError(f"bad option for accuracy predictor kind {kind!r}: {err}") from None
        if encoding == "ofa":
            encode_ofa_matrix(space, space.sample_matrix(0, 1))  # fail now if the space does not fit
        self.space = space
        self.kind = kind
        self.encoding = encoding
        self.fitted = False

    def features(self, matrix: IntMatrix) -> npt.NDArray[np.float32]:
        """The model's input features for choice-index rows."""
        return encode_ofa_matrix(self.space, matrix) if self.encoding == "ofa" else self.space.encode_matrix(matrix)

    def fit(self, archs: Sequence[Mapping[str, Any]], acc: npt.ArrayLike) -> AccuracyPredictor:
        """Fit on archs and their measured top-1 (fractions); returns self.

        Raises:
            ValueError: lengths differ, fewer than 2 archs, non-finite targets, or an invalid arch.
        """
        targets = np.asarray(acc, dtype=np.float64).reshape(-1)
        if len(archs) != len(targets):
            raise ValueError(f"got {len(archs)} archs but {len(targets)} accuracies")
        if len(targets) < 2 or not np.isfinite(targets).all():
            raise ValueError("fit needs at least 2 archs with finite accuracies")
        self.model.fit(self.features(self.space.to_matrix(archs)), targets)
        self.fitted = True
        return self

    def predict_matrix(self, matrix: IntMatrix) -> npt.NDArray[np.float64]:
        """Predicted top-1 of choice-index rows of this predictor's space (the fast path of a search)."""
        if not self.fitted:
            raise RuntimeError("the accuracy predictor is not fitted; call fit() or load()")
        return self.model.predict(self.features(matrix))

    def predict(self, archs: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
        """Predicted top-1 of a list of archs (ValueError naming the field of an invalid one)."""
        return self.predict_matrix(self.space.to_matrix(archs))

    def __call__(self, archs: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
        """Same as `predict`, so that a predictor is a search objective."""
        return self.predict(archs)

    def evaluate(self, archs: Sequence[Mapping[str, Any]], acc: npt.ArrayLike) -> PredictorScore:
        """RMSE and Kendall tau of the predictions against measured top-1 on (held-out) archs."""
        from scipy.stats import kendalltau

        truth = np.asarray(acc, dtype=np.float64).reshape(-1)
        if len(archs) != len(truth) or len(truth) < 2:
            raise ValueError(f"evaluate needs >= 2 archs and as many accuracies, got {len(archs)} and {len(truth)}")
        pred = self.predict(archs)
        tau = float(kendalltau(pred, truth).statistic)
        return PredictorScore(float(np.sqrt(np.mean((pred - truth) ** 2))), None if np.isnan(tau) else tau, len(truth))

    def save(self, path: str | Path) -> Path:
        """Write the predictor into directory `path`: ``predictor.json`` and the model's files (no pickle)."""
        if not self.fitted:
            raise RuntimeError("the accuracy predictor is not fitted; nothing to save")
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        meta = self.model.save(directory)
        doc = {
            "format": FORMAT_VERSION, "kind": self.kind, "encoding": self.encoding,
            "space": space_to_json(self.space), "options": self.model.options(), "model": meta,
        }  # fmt: skip
        (directory / META_FILE).write_text(json.dumps(doc, indent=2))
        return directory

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | None = None) -> AccuracyPredictor:
        """Read a predictor written by `save`.

        Args:
            path: the directory.
            space: the space to use (default: rebuilt from the saved description).

        Raises:
            FileNotFoundError: no ``predictor.json`` in `path`.
            ValueError: a format this version cannot read.
        """
        directory = Path(path)
        doc = json.loads((directory / META_FILE).read_text())
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"{directory / META_FILE}: unsupported predictor format {doc.get('format')!r}")
        pred = cls(space or space_from_json(doc["space"]), doc["kind"], doc["encoding"], **doc["options"])
        pred.model = MODELS.get(doc["kind"]).load(directory, doc["options"], doc["model"])
        pred.fitted = True
        return pred

    @classmethod
    def from_ofa(cls, path: str | Path, space: SearchSpace) -> AccuracyPredictor:
        """OFA's published predictor (``acc_predictor.pth`` or a safetensors copy) on OFA's encoding.

        Raises:
            ValueError: the file is not in OFA's format, or the space does not fit OFA's encoding.
        """
        pred = cls(space, "mlp", "ofa")
        pred.model = MLPModel.from_ofa_weights(read_ofa_state_dict(path))
        pred.fitted = True
        return pred


list_kinds = MODELS.names
"""Registered accuracy-predictor kinds, sorted."""
