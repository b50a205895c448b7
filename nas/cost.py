"""MACs and parameter counts of subnets, analytically and vectorised (no network is built).

Conventions are OFA's (`Mbv3FLOPsModel`): a conv costs ``Cin*Cout*k*k*Hout*Wout/groups`` MACs and a
linear layer ``in*out``; BN, activations, biases, residual adds and pooling are free; SE convs
run at 1x1. Parameters count weights, biases and BN affine parameters, not BN buffers.

Block costs depend only on (slot, kernel, expand ratio, resolution), since spatial sizes do not
depend on depth; they are tabulated once per space and gathered for whole batches of archs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from nas.backbone import MBV3Backbone, se_channels
from nas.space import IntMatrix, SearchSpace

if TYPE_CHECKING:
    from torch import nn

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CostTables:
    """Per-space lookup tables.

    Attributes:
        fixed_macs: MACs of stem, block 0 and head, per resolution index.
        block_macs: MACs of each elastic block, indexed [resolution, slot, kernel, expand].
        fixed_params: parameters of stem, block 0 and head.
        block_params: parameters of each elastic block, indexed [slot, kernel, expand].
    """

    fixed_macs: Int64Array
    block_macs: Int64Array
    fixed_params: int
    block_params: Int64Array


def _block_cost(
    in_ch: int, out_ch: int, mid: int, k: int, use_se: bool, in_size: int, out_size: int
) -> tuple[int, int]:
    se = se_channels(mid) if use_se else 0
    se_params = 2 * mid * se + se + mid if use_se else 0
    macs = in_ch * mid * in_size**2 + mid * k * k * out_size**2 + 2 * mid * se + mid * out_ch * out_size**2
    params = in_ch * mid + 2 * mid + mid * k * k + 2 * mid + se_params + mid * out_ch + 2 * out_ch
    return macs, params


def _fixed_cost(b: MBV3Backbone, resolution: int) -> tuple[int, int]:
    f0 = b.stem_size(resolution)
    last = b.block_sizes(resolution)[-1][1]
    c0, c1, cl = b.stem_width, b.block0_width, b.stage_widths[-1]
    macs = (
        b.in_channels * c0 * 9 * f0**2  # first conv
        + c0 * 9 * f0**2  # block 0 depthwise
        + c0 * c1 * f0**2  # block 0 pointwise
        + cl * b.final_expand_width * last**2
        + b.final_expand_width * b.feature_mix_width
        + b.feature_mix_width * b.num_classes
    )
    params = (
        b.in_channels * c0 * 9 + 2 * c0
        + c0 * 9 + 2 * c0 + c0 * c1 + 2 * c1
        + cl * b.final_expand_width + 2 * b.final_expand_width
        + b.final_expand_width * b.feature_mix_width
        + b.feature_mix_width * b.num_classes + b.num_classes
    )  # fmt: skip
    return macs, params


@lru_cache(maxsize=32)
def cost_tables(space: SearchSpace) -> CostTables:
    """The cost tables of a space (cached)."""
    b = space.backbone
    nr, nb, nk, ne = len(space.resolutions), space.n_blocks, len(space.kernel_sizes), len(space.expand_ratios)
    block_macs = np.zeros((nr, nb, nk, ne), dtype=np.int64)
    block_params = np.zeros((nb, nk, ne), dtype=np.int64)
    fixed_macs = np.zeros(nr, dtype=np.int64)
    fixed_params = 0
    for ri, r in enumerate(space.resolutions):
        fixed_macs[ri], fixed_params = _fixed_cost(b, r)
        for spec, (fin, fout) in zip(b.blocks, b.block_sizes(r), strict=True):
            for ki, k in enumerate(space.kernel_sizes):
                for ei, e in enumerate(space.expand_ratios):
                    mid = spec.mid_channels(e)
                    m, p = _block_cost(spec.in_channels, spec.out_channels, mid, k, spec.use_se, fin, fout)
                    block_macs[ri, spec.index, ki, ei] = m
                    block_params[spec.index, ki, ei] = p
    return CostTables(fixed_macs, block_macs, fixed_params, block_params)


def macs_matrix(space: SearchSpace, matrix: IntMatrix) -> Int64Array:
    """MACs of every row of a choice-index matrix (see `SearchSpace.to_matrix`)."""
    t = cost_tables(space)
    nb = space.n_blocks
    ks, es, r = matrix[:, :nb], matrix[:, nb : 2 * nb], matrix[:, -1]
    per_block = t.block_macs[r[:, None], np.arange(nb)[None, :], ks, es]
    return t.fixed_macs[r] + (per_block * space.active_mask(matrix)).sum(axis=1)


def params_matrix(space: SearchSpace, matrix: IntMatrix) -> Int64Array:
    """Parameter counts of every row of a choice-index matrix."""
    t = cost_tables(space)
    nb = space.n_blocks
    per_block = t.block_params[np.arange(nb)[None, :], matrix[:, :nb], matrix[:, nb : 2 * nb]]
    return t.fixed_params + (per_block * space.active_mask(matrix)).sum(axis=1)


@overload
def macs(space: SearchSpace, arch: Mapping[str, Any]) -> int: ...
@overload
def macs(space: SearchSpace, arch: Sequence[Mapping[str, Any]]) -> Int64Array: ...
def macs(space: SearchSpace, arch: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int | Int64Array:
    """MACs of one subnet (an int) or of a list of subnets (an int64 array).

    Divide by 1e6 for OFA's "MFLOPs" figures (e.g. 566.170656 for the w1.0 max subnet at 224).
    """
    if isinstance(arch, Mapping):
        return int(macs_matrix(space, space.to_matrix([arch]))[0])
    return macs_matrix(space, space.to_matrix(arch))


@overload
def params(space: SearchSpace, arch: Mapping[str, Any]) -> int: ...
@overload
def params(space: SearchSpace, arch: Sequence[Mapping[str, Any]]) -> Int64Array: ...
def params(space: SearchSpace, arch: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int | Int64Array:
    """Parameter count of one subnet (an int) or of a list of subnets (an int64 array)."""
    if isinstance(arch, Mapping):
        return int(params_matrix(space, space.to_matrix([arch]))[0])
    return params_matrix(space, space.to_matrix(arch))


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Count the MACs of any module by running it once with hooks on Conv2d and Linear layers.

    Uses the same convention as `macs`; useful to check it, and for modules outside our spaces.

    Args:
        module: the network.
        input_shape: shape of one input batch, e.g. (1, 3, 224, 224); MACs are per batch.
    """
    import torch
    from torch import nn

    total = 0

    def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            per_position = layer.in_channels * layer.out_channels * kh * kw // layer.groups
            total += per_position * output.shape[-2] * output.shape[-1] * output.shape[0]
        elif isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features * output.shape[0]

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = module.training
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(input_shape))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return total
