"""Re-evaluating the Pareto members for real, keeping predicted and true values side by side."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.search.result import SearchResult
from nas.space import Arch

if TYPE_CHECKING:
    from nas.supernet import OFAMobileNetV3

TrueEvaluator = Callable[[list[Arch]], Any]


@dataclass(frozen=True)
class ValidatedMember:
    """One Pareto member after validation.

    Attributes:
        arch: the subnet.
        predicted: the objective values the search saw.
        true: the values of the true evaluators (only the objectives that have one).
    """

    arch: Arch
    predicted: dict[str, float]
    true: dict[str, float]

    def error(self, name: str) -> float:
        """The true value minus the predicted one, for one objective."""
        return self.true[name] - self.predicted[name]


def validate_front(result: SearchResult, evaluators: Mapping[str, TrueEvaluator]) -> list[ValidatedMember]:
    """Evaluate every front member with the true evaluators (vectorised over the front).

    Args:
        result: a search result.
        evaluators: objective name -> callable on a list of archs returning one value per arch,
            e.g. `supernet_accuracy(...)` or a latency measurement.

    Raises:
        KeyError: an evaluator for a name that is not an objective of the search.
        ValueError: an evaluator returned the wrong number of values.
    """
    unknown = sorted(set(evaluators) - set(result.names))
    if unknown:
        raise KeyError(f"evaluators name unknown objective(s) {unknown}; objectives are {list(result.names)}")
    archs = [arch for arch, _ in result.pareto]
    true: dict[str, np.ndarray] = {}
    for name, f in evaluators.items():
        column = np.asarray(f(archs), dtype=np.float64).reshape(-1) if archs else np.zeros(0)
        if column.shape != (len(archs),):
            raise ValueError(f"true evaluator {name!r} returned {column.size} values for {len(archs)} archs")
        true[name] = column
    return [
        ValidatedMember(arch, predicted, {name: float(true[name][i]) for name in evaluators})
        for i, (arch, predicted) in enumerate(result.pareto)
    ]


def supernet_accuracy(supernet: OFAMobileNetV3, split: str = "test", **evaluate_options: Any) -> TrueEvaluator:
    """A true evaluator: BN-recalibrated top-1 of each subnet on a split (see `nas.train.evaluate`)."""

    def evaluate_all(archs: list[Arch]) -> list[float]:
        from nas.train import evaluate

        return [evaluate(supernet, arch, split, **evaluate_options).top1 for arch in archs]

    return evaluate_all
