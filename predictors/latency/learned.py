"""A latency predictor fitted on measured end-to-end samples of one target.

The model has two parts, both saved as text (JSON; LightGBM's own model string), never pickled:

1. a linear model of the latency in ms, fitted in closed form to minimise the *relative* error,
   on additive features: per stage, the summed MACs, depthwise MACs, volume of the expanded
   (mid-channel) tensors, volume of the blocks' input and output tensors, and the number of
   active blocks; the fixed layers' MACs; the number of operators the subnet's blocks run and
   how many of its blocks use each kernel size above the smallest; and the lookup-table sum
   where a table is given. Latency is close to additive over layers, so this part alone is
   already good. The counts model what an operator costs whatever its size (a kernel launch
   on a GPU, dispatch and layout changes in ONNX Runtime), which dominates at batch 1 on small
   inputs; the MACs and volumes model compute and memory traffic, which dominate at large
   batches. The operator and kernel-size counts are whole-subnet sums: per stage, they cost
   accuracy below ~50 samples (measured and synthetic latencies alike). The part is shrunk
   towards "latency proportional to the table sum (else to MACs)", so that a few samples give
   that baseline and more samples refine it;
2. a LightGBM model of the remaining log-ratio ``log(ms / linear)`` on the one-hot encoding,
   the per-block MACs, the linear prediction and the table sum (skipped below
   ``min_gbm_samples`` samples).

A small bootstrap ensemble of the linear part measures how sure the model is; `suggest` picks
the candidates where it is least sure (active learning: measure those next).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nas.backbone import BlockSpec
from nas.cost import cost_tables
from nas.space import IntMatrix, SearchSpace, as_rng
from predictors.jsonfile import write_json
from predictors.latency.lut import LookupTable
from predictors.latency.measure import validate_latencies
from predictors.latency.spaces import space_from_dict, space_to_dict

FloatArray = npt.NDArray[np.float64]
PREDICTOR_FORMAT = 2
"""Version of the saved form; 2 added the I/O volumes, kernel-size counts and operator count (1 still loads)."""
_STAGE_FEATURES = 5  # per block, summed per stage: MACs, depthwise MACs, mid-channel volume, input + output volume, 1
# Then, summed over the subnet: the block's operator count (at _STAGE_FEATURES), and at _STAGE_FEATURES + i,
# for each kernel size i > 0 (the smallest is i = 0), 1 where the block uses that kernel size.


def block_ops(spec: BlockSpec, expand_ratio: int) -> int:
    """Operators an active block runs, each with a cost of its own whatever its size.

    The nodes of the exported ONNX graph: expand conv + activation (absent at ratio 1), depthwise
    conv + activation, squeeze-and-excite (mean over W then H, reduce conv, activation, expand
    conv, gate, multiply), project conv, residual add.
    """
    return 2 * (expand_ratio != 1) + 2 + 7 * spec.use_se + 1 + spec.has_shortcut


@dataclass(frozen=True)
class LatencyMetrics:
    """Agreement of predictions with measurements.

    Attributes:
        n: number of samples.
        mape: mean absolute percentage error, in percent.
        within_5: fraction of predictions within ±5% of the measurement.
        within_10: fraction within ±10%.
        kendall_tau: rank correlation of predictions and measurements.
    """

    n: int
    mape: float
    within_5: float
    within_10: float
    kendall_tau: float


def latency_metrics(predicted: Sequence[float] | FloatArray, measured: Sequence[float] | FloatArray) -> LatencyMetrics:
    """MAPE, fractions within ±5% / ±10% and Kendall τ of predictions against measurements.

    Raises:
        ValueError: different lengths, or measurements that are not finite and positive.
    """
    from scipy.stats import kendalltau

    y = validate_latencies(measured, "measured")
    p = np.asarray(predicted, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} predictions for {len(y)} measurements")
    rel = np.abs(p - y) / y
    tau = float(kendalltau(p, y).statistic) if len(y) > 1 else float("nan")
    return LatencyMetrics(
        len(y), float(rel.mean() * 100), float((rel <= 0.05).mean()), float((rel <= 0.10).mean()), tau
    )


class LearnedLatencyPredictor:
    """Predicts a subnet's latency (ms) on one target from measured samples.

    Args:
        space: the space of the subnets.
        table: a lookup table of the same target, whose sum becomes a feature (optional).
        ensemble: bootstrap members of the linear part (for `suggest`).
        min_gbm_samples: fit the LightGBM residual only from this many samples on.
        gbm_rounds: boosting rounds of the residual model.
        ridge: ridge strength of the linear part on standardised features (None: chosen by
            leave-one-out error from 1e-6 to 100).
        seed: seed of the bootstrap and of LightGBM.
    """

    def __init__(
        self,
        space: SearchSpace,
        table: LookupTable | None = None,
        *,
        ensemble: int = 8,
        min_gbm_samples: int = 50,
        gbm_rounds: int = 200,
        ridge: float | None = None,
        seed: int = 0,
    ) -> None:
        if ensemble < 2:
            raise ValueError(f"ensemble must be >= 2, got {ensemble}")
        self.space = space
        self.table = table
        self.ensemble = ensemble
        self.min_gbm_samples = min_gbm_samples
        self.gbm_rounds = gbm_rounds
        self.ridge = ridge
        self.ridge_ = 0.0
        self.seed = seed
        self.coef: FloatArray | None = None
        self.members: FloatArray | None = None
        self.floor = 0.0
        self._gbm: Any = None

    # ------------------------------------------------------------------ features

    @cached_property
    def _block_table(self) -> FloatArray:
        """[resolution, slot, kernel, expand, feature] of every elastic block (see `_STAGE_FEATURES`)."""
        s, b = self.space, self.space.backbone
        macs = cost_tables(s).block_macs
        nk = len(s.kernel_sizes)
        out = np.zeros((len(s.resolutions), s.n_blocks, nk, len(s.expand_ratios), _STAGE_FEATURES + nk))
        for ri, r in enumerate(s.resolutions):
            for spec, (fin, fout) in zip(b.blocks, b.block_sizes(r), strict=True):
                for ki, k in enumerate(s.kernel_sizes):
                    for ei, e in enumerate(s.expand_ratios):
                        mid = spec.mid_channels(e)
                        out[ri, spec.index, ki, ei, : _STAGE_FEATURES + 1] = (
                            macs[ri, spec.index, ki, ei] / 1e6,
                            mid * k * k * fout**2 / 1e6,
                            mid * (fin**2 + fout**2) / 1e6,
                            (spec.in_channels * fin**2 + spec.out_channels * fout**2) / 1e6,
                            1.0,
                            block_ops(spec, e),
                        )
                        if ki > 0:
                            out[ri, spec.index, ki, ei, _STAGE_FEATURES + ki] = 1.0
        return out

    def _block_features(self, matrix: IntMatrix) -> FloatArray:
        """(n, n_blocks, features) of the active blocks (zero for skipped ones)."""
        nb = self.space.n_blocks
        per = self._block_table[matrix[:, -1][:, None], np.arange(nb)[None, :], matrix[:, :nb], matrix[:, nb : 2 * nb]]
        return per * self.space.active_mask(matrix)[:, :, None]

    def _linear_features(self, matrix: IntMatrix, blocks: FloatArray, table_sum: FloatArray | None) -> FloatArray:
        """Per-stage sums; fixed MACs; subnet sums (operators, kernel sizes); (table sum;) 1."""
        s, n = self.space, len(matrix)
        columns = [
            blocks[:, :, :_STAGE_FEATURES].reshape(n, s.n_stages, s.max_depth, -1).sum(axis=2).reshape(n, -1),
            (cost_tables(s).fixed_macs[matrix[:, -1]] / 1e6)[:, None],
            blocks[:, :, _STAGE_FEATURES:].sum(axis=1),
        ]
        if table_sum is not None:
            columns.append(table_sum[:, None])
        columns.append(np.ones((n, 1)))
        return np.concatenate(columns, axis=1)

    def _features(self, matrix: IntMatrix) -> tuple[FloatArray, FloatArray]:
        """(linear features, residual features) of choice-index rows."""
        blocks = self._block_features(matrix)
        table_sum = self.table.predict_matrix(matrix, self.space) if self.table is not None else None
        linear = self._linear_features(matrix, blocks, table_sum)
        extra: list[FloatArray] = [self.space.encode_matrix(matrix).astype(np.float64), blocks[:, :, 0]]
        if table_sum is not None:
            extra.append(table_sum[:, None])
        return linear, np.concatenate(extra, axis=1)

    # ------------------------------------------------------------------ fitting

    def _baseline(self, n_features: int) -> FloatArray:
        """Which linear features sum to the baseline the fit shrinks towards: the table sum, else all MACs."""
        mask = np.zeros(n_features)
        if self.table is not None:
            mask[-2] = 1.0
        else:
            n = self.space.n_stages * _STAGE_FEATURES
            mask[0:n:_STAGE_FEATURES] = 1.0
            mask[n] = 1.0
        return mask

    def _solve(self, x: FloatArray, y: FloatArray, ridge: float | None) -> tuple[FloatArray, float]:
        """Coefficients minimising the relative error sum(((x @ w - y) / y) ** 2) + ridge * |w - w0|^2.

        ``w0`` is the best fit of latency proportional to the baseline (see `_baseline`); the
        deviation from it is shrunk on standardised features, with the ridge strength chosen
        by exact leave-one-out error when not given. Returns (coefficients, ridge).
        """
        a = x / y[:, None]  # in these units every target is 1
        mask = self._baseline(x.shape[1])
        base = a @ mask
        w0 = mask * float(base.sum() / (base**2).sum())
        r = 1.0 - a @ w0
        norms = np.sqrt((a**2).mean(axis=0)) + 1e-12
        a_s = a / norms
        gram, rhs = a_s.T @ a_s, a_s.T @ r
        best: tuple[float, float, FloatArray] | None = None
        for lam in [ridge] if ridge is not None else [10.0**e for e in range(-6, 3)]:
            inv = np.linalg.inv(gram + lam * len(y) * np.eye(len(gram)))
            delta = inv @ rhs
            hat = np.einsum("ij,jk,ik->i", a_s, inv, a_s)
            loo = float((((r - a_s @ delta) / np.maximum(1.0 - hat, 1e-9)) ** 2).mean())
            if best is None or loo < best[0]:
                best = (loo, lam, delta)
        assert best is not None
        return w0 + best[2] / norms, best[1]

    def fit(self, archs: Sequence[Mapping[str, Any]], ms: Sequence[float] | FloatArray) -> LearnedLatencyPredictor:
        """Fit on measured end-to-end latencies (ms) of `archs`; returns self.

        Raises:
            ValueError: an invalid arch, a latency that is not finite and positive, or fewer
                than 5 samples / a length mismatch.
            KeyError: the table lacks an entry an arch needs (the message names it).
        """
        return self.fit_matrix(self.space.to_matrix(archs), ms)

    def fit_matrix(self, matrix: IntMatrix, ms: Sequence[float] | FloatArray) -> LearnedLatencyPredictor:
        """`fit` on choice-index rows."""
        y = validate_latencies(ms, "ms")
        if len(y) != len(matrix):
            raise ValueError(f"{len(matrix)} archs but {len(y)} latencies")
        if len(y) < 5:
            raise ValueError(f"need at least 5 measured samples, got {len(y)}")
        linear, extra = self._features(matrix)
        self.coef, self.ridge_ = self._solve(linear, y, self.ridge)
        rng = as_rng(self.seed)
        members = []
        for _ in range(self.ensemble):
            idx = rng.integers(0, len(y), len(y))
            members.append(self._solve(linear[idx], y[idx], self.ridge_)[0])
        self.members = np.stack(members)
        self.floor = float(y.min()) * 0.1
        self._gbm = None
        if len(y) >= self.min_gbm_samples:
            import lightgbm as lgb

            base = self._linear(linear)
            params = {
                "objective": "regression",
                "learning_rate": 0.05,
                "num_leaves": 8,
                "min_data_in_leaf": 5,
                "feature_fraction": 0.8,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "lambda_l2": 1.0,
                "num_threads": 1,
                "deterministic": True,
                "seed": self.seed,
                "verbose": -1,
            }
            data = lgb.Dataset(np.concatenate([extra, base[:, None]], axis=1), np.log(y / base))
            self._gbm = lgb.train(params, data, num_boost_round=self.gbm_rounds)
        return self

    def _linear(self, linear: FloatArray, coef: FloatArray | None = None) -> FloatArray:
        w = self.coef if coef is None else coef
        assert w is not None
        return np.maximum(linear @ w, self.floor)

    # ------------------------------------------------------------------ prediction

    def _check_fitted(self) -> None:
        if self.coef is None:
            raise RuntimeError("the predictor is not fitted; call fit(archs, ms) first")

    def predict_matrix(self, matrix: IntMatrix) -> FloatArray:
        """Predicted latency (ms) of every choice-index row (of this predictor's space)."""
        self._check_fitted()
        linear, extra = self._features(matrix)
        base = self._linear(linear)
        if self._gbm is None:
            return base
        return base * np.exp(self._gbm.predict(np.concatenate([extra, base[:, None]], axis=1)))

    def predict(self, archs: Sequence[Mapping[str, Any]]) -> FloatArray:
        """Predicted latency (ms) of each arch.

        Raises:
            RuntimeError: not fitted yet.
            ValueError: an invalid arch.
        """
        return self.predict_matrix(self.space.to_matrix(archs))

    def evaluate(self, archs: Sequence[Mapping[str, Any]], ms: Sequence[float] | FloatArray) -> LatencyMetrics:
        """Metrics of the predictions on held-out measured samples."""
        return latency_metrics(self.predict(archs), ms)

    def uncertainty_matrix(self, matrix: IntMatrix) -> FloatArray:
        """Relative spread (std / mean) of the bootstrap members' predictions per row."""
        self._check_fitted()
        assert self.members is not None
        linear, _ = self._features(matrix)
        preds = np.stack([self._linear(linear, m) for m in self.members])
        return preds.std(axis=0) / preds.mean(axis=0)

    def suggest(self, candidates: Sequence[Mapping[str, Any]], n: int) -> list[int]:
        """Indices of the `n` distinct candidates the model is least sure about (measure those next).

        Raises:
            RuntimeError: not fitted yet.
            ValueError: n < 1 or an invalid candidate.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        matrix = self.space.to_matrix(candidates)
        order = np.argsort(-self.uncertainty_matrix(matrix), kind="stable")
        _, first = np.unique(matrix, axis=0, return_index=True)
        distinct = set(first.tolist())
        return [int(i) for i in order if i in distinct][:n]

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: coefficients, LightGBM's model string, the table (no pickle)."""
        self._check_fitted()
        assert self.coef is not None and self.members is not None
        return {
            "format": PREDICTOR_FORMAT,
            "space": space_to_dict(self.space),
            "settings": {
                "ensemble": self.ensemble,
                "min_gbm_samples": self.min_gbm_samples,
                "gbm_rounds": self.gbm_rounds,
                "ridge": self.ridge,
                "seed": self.seed,
            },
            "coef": self.coef.tolist(),
            "members": self.members.tolist(),
            "floor": self.floor,
            "ridge_": self.ridge_,
            "gbm": None if self._gbm is None else self._gbm.model_to_string(),
            "table": None if self.table is None else self.table.to_dict(),
        }

    def _from_format_1(self, coef: FloatArray) -> FloatArray:
        """Format-1 coefficients (rows) in today's feature layout, with the same predictions.

        Format 1 had per stage MACs, depthwise MACs, mid-channel volume and block count, then the
        fixed MACs, (the table sum,) 1: the features added since (the stages' input + output volumes,
        the operator and kernel-size counts) weigh 0.
        """
        ns, lead = self.space.n_stages, coef.shape[:-1]
        old = coef[..., : ns * 4].reshape(*lead, ns, 4)
        stages = np.insert(old, 3, 0.0, axis=-1).reshape(*lead, -1)
        added = np.zeros((*lead, len(self.space.kernel_sizes)))  # after the fixed MACs
        rest = coef[..., ns * 4 :]
        return np.concatenate([stages, rest[..., :1], added, rest[..., 1:]], axis=-1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedLatencyPredictor:
        """Inverse of `to_dict`; format 1 (before the operator-count features) loads too.

        Raises:
            ValueError: an unknown format.
        """
        fmt = data.get("format")
        if fmt not in (1, PREDICTOR_FORMAT):
            raise ValueError(f"not a latency predictor of format 1 to {PREDICTOR_FORMAT}: format={fmt!r}")
        table = None if data["table"] is None else LookupTable.from_dict(data["table"])
        out = cls(space_from_dict(data["space"]), table, **data["settings"])
        out.coef = np.asarray(data["coef"], dtype=np.float64)
        out.members = np.asarray(data["members"], dtype=np.float64)
        if fmt == 1:
            out.coef, out.members = out._from_format_1(out.coef), out._from_format_1(out.members)
        out.floor = float(data["floor"])
        out.ridge_ = float(data["ridge_"])
        if data["gbm"] is not None:
            import lightgbm as lgb

            out._gbm = lgb.Booster(model_str=data["gbm"])
        return out

    def save(self, path: str | Path) -> Path:
        """Write the predictor as JSON (its folder is created)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LearnedLatencyPredictor:
        """Read a predictor written by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
