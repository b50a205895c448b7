"""OFA's published accuracy-predictor format (OFA_MBV3_SPEC §11): its 128 features and its weights.

The published ``acc_predictor.pth`` is the state dict of ``Sequential(Linear(128,400), ReLU,
Linear(400,400), ReLU, Linear(400,400), ReLU, Linear(400,1))`` with keys ``{0,2,4,6}.{weight,bias}``
and no output offset; it predicts top-1 as a fraction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nas.space import IntMatrix, SearchSpace

OFA_KERNELS = (3, 5, 7)
OFA_EXPANDS = (3, 4, 6)
OFA_SLOTS = 20
OFA_FEATURES = 128
OFA_LAYER_KEYS = ("0", "2", "4", "6")


def check_ofa_space(space: SearchSpace) -> None:
    """Check that OFA's encoding can describe the space's subnets.

    Raises:
        ValueError: naming the dimension that does not fit (20 slots, ks in 3/5/7, e in 3/4/6,
            resolutions 112..239 px).
    """
    if space.n_blocks != OFA_SLOTS:
        raise ValueError(f"OFA's encoding needs {OFA_SLOTS} block slots, space {space.name} has {space.n_blocks}")
    dims = (("kernel_sizes", space.kernel_sizes, OFA_KERNELS), ("expand_ratios", space.expand_ratios, OFA_EXPANDS))
    for field, values, allowed in dims:
        extra = sorted(set(values) - set(allowed))
        if extra:
            raise ValueError(f"OFA's encoding has no {field} {extra}; allowed: {list(allowed)}")
    bad = [r for r in space.resolutions if not 112 <= r < 240]
    if bad:
        raise ValueError(f"OFA's encoding covers resolutions 112..239, got {bad}")


def encode_ofa_matrix(space: SearchSpace, matrix: IntMatrix) -> npt.NDArray[np.float32]:
    """OFA's 128 features of choice-index rows: kernel one-hots, expand one-hots, resolution one-hot.

    Raises:
        ValueError: the space does not fit OFA's encoding (see `check_ofa_space`).
    """
    check_ofa_space(space)
    n = len(matrix)
    b = space.n_blocks
    kernel_pos = np.array([OFA_KERNELS.index(k) for k in space.kernel_sizes])[matrix[:, :b]]
    expand_pos = np.array([OFA_EXPANDS.index(e) for e in space.expand_ratios])[matrix[:, b : 2 * b]]
    res_pos = (np.asarray(space.resolutions)[matrix[:, -1]] - 112) // 16
    active = space.active_mask(matrix).astype(np.float32)
    out = np.zeros((n, OFA_FEATURES), dtype=np.float32)
    rows = np.arange(n)[:, None]
    slots = np.arange(b)[None, :]
    out[rows, 3 * slots + kernel_pos] = active
    out[rows, 60 + 3 * slots + expand_pos] = active
    out[np.arange(n), 120 + res_pos] = 1.0
    return out


def encode_ofa(space: SearchSpace, archs: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float32]:
    """OFA's 128-feature encoding of archs (see `encode_ofa_matrix`)."""
    return encode_ofa_matrix(space, space.to_matrix(archs))


def read_ofa_state_dict(path: str | Path) -> dict[str, npt.NDArray[np.float32]]:
    """The weights of an OFA-format predictor from a ``.safetensors`` file or a weights-only torch file.

    Nothing is unpickled: torch files are read with ``torch.load(weights_only=True)``.

    Raises:
        ValueError: keys or shapes are not OFA's ``{0,2,4,6}.{weight,bias}`` layout.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        raw: dict[str, Any] = dict(load_file(str(path)))
    else:
        import torch

        loaded = torch.load(path, map_location="cpu", weights_only=True)
        raw = {k: v.detach().numpy() for k, v in dict(loaded).items()}
    expected = {f"{i}.{p}" for i in OFA_LAYER_KEYS for p in ("weight", "bias")}
    if set(raw) != expected:
        raise ValueError(f"{path} is not an OFA accuracy predictor: keys {sorted(raw)}, expected {sorted(expected)}")
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}
    if weights["0.weight"].shape[1] != OFA_FEATURES or weights["6.weight"].shape[0] != 1:
        raise ValueError(
            f"{path}: first layer takes {weights['0.weight'].shape[1]} features (expected {OFA_FEATURES}), "
            f"last layer gives {weights['6.weight'].shape[0]} outputs (expected 1)"
        )
    return weights
