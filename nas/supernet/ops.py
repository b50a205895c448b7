"""Small functional pieces shared by the dynamic supernet and the static subnets."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from nas.supernet.training_ops import pixel_mean, recording, relu_

ACTIVATIONS = ("relu", "h_swish")


def activate(x: Tensor, act: str | None, *, inplace: bool = False) -> Tensor:
    """Apply an OFA activation by name ("relu", "h_swish" or None).

    With `inplace`, ReLU overwrites `x` (saving an allocation and a pass over memory); pass it only
    for a tensor nothing else reads, such as a BN output.
    """
    if act is None:
        return x
    if act == "relu":
        return relu_(x) if inplace else F.relu(x)
    if act == "h_swish":
        return F.hardswish(x)
    raise ValueError(f"unknown activation {act!r}; known: {ACTIVATIONS}")


def global_avg_pool(x: Tensor) -> Tensor:
    """Mean over W, then over H, keeping dims (OFA's exact order of reduction).

    While gradients are recorded (training), the mean over all pixels at once
    (`nas.supernet.training_ops.pixel_mean`): the same up to float rounding, and faster.
    """
    if recording() and x.requires_grad:
        return pixel_mean(x)
    return x.mean(3, keepdim=True).mean(2, keepdim=True)


def squeeze_excite(x: Tensor, reduce: Callable[[Tensor], Tensor], expand: Callable[[Tensor], Tensor]) -> Tensor:
    """Squeeze-and-excite: pool -> reduce (1x1 conv) -> ReLU -> expand (1x1 conv) -> h_sigmoid -> scale x."""
    return x * F.hardsigmoid(expand(F.relu(reduce(global_avg_pool(x)))))


def center_crop(weight: Tensor, size: int) -> Tensor:
    """Centre size x size crop of the last two (square, odd) dims."""
    full = weight.shape[-1]
    start = full // 2 - size // 2
    return weight[..., start : start + size, start : start + size]
