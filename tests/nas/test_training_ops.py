"""The training step's own convolutions and ReLU give PyTorch's results (nas.supernet.training_ops)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import nas.supernet.dynamic as dynamic
import nas.supernet.ops as ops
import nas.supernet.static as static
from nas.space import Arch
from nas.spaces import get_space
from nas.supernet import OFAMobileNetV3, build_supernet
from nas.supernet.training_ops import (
    depthwise_conv2d,
    pixel_mean,
    pointwise_conv2d,
    relu_,
    tap_map,
    uses_pairwise_gradient,
)

MEMORY_FORMATS = (torch.contiguous_format, torch.channels_last)


def _input(shape: tuple[int, ...], memory_format: torch.memory_format) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize(
    ("size", "kernel", "stride"),
    [(1, 3, 1), (2, 7, 1), (2, 3, 2), (3, 5, 2), (4, 7, 2), (6, 5, 1), (7, 7, 1), (9, 7, 2), (14, 7, 1), (5, 3, 1)],
)
def test_depthwise_gradients_are_pytorchs(
    size: int, kernel: int, stride: int, memory_format: torch.memory_format
) -> None:
    torch.manual_seed(size * 100 + kernel * 10 + stride)
    x = _input((3, 5, size, size), memory_format)
    weight = torch.randn(5, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    if size <= 4:  # numerical Jacobians grow with the map; larger maps are checked against PyTorch's gradients
        assert torch.autograd.gradcheck(lambda a, w: depthwise_conv2d(a, w, stride, kernel // 2), (x, weight))
    ours = depthwise_conv2d(x, weight, stride, kernel // 2)
    theirs = F.conv2d(x, weight, None, stride, kernel // 2, 1, 5)
    grad = torch.randn_like(theirs)
    mine = torch.autograd.grad(ours, (x, weight), grad)
    reference = torch.autograd.grad(theirs, (x, weight), grad)
    for a, b in zip(mine, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_the_pairwise_gradient_serves_small_maps_and_large_kernels() -> None:
    assert uses_pairwise_gradient(7, 2, 2) and uses_pairwise_gradient(5, 7, 7) and uses_pairwise_gradient(3, 2, 2)
    assert not uses_pairwise_gradient(7, 14, 14) and not uses_pairwise_gradient(3, 4, 4)
    # each output position of a 3x3 map under a 3x3 kernel with padding 1 sees between 4 and 9 inputs
    mapping = tap_map(3, 3, 3, 1, 1)
    assert mapping.shape == (81, 9) and set(mapping.sum(1).tolist()) <= {0.0, 1.0}
    assert mapping.sum().item() == 4 * 4 + 4 * 6 + 9


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
def test_pointwise_and_relu_gradients_are_pytorchs(memory_format: torch.memory_format) -> None:
    torch.manual_seed(0)
    x = _input((4, 6, 5, 5), memory_format)
    weight = torch.randn(8, 6, 1, 1, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pointwise_conv2d, (x, weight, bias))
    torch.testing.assert_close(pointwise_conv2d(x, weight, bias), F.conv2d(x, weight, bias))
    assert torch.autograd.gradcheck(lambda a: relu_(a * 1.0), (x,))
    assert torch.autograd.gradcheck(pixel_mean, (x,))
    torch.testing.assert_close(pixel_mean(x), x.mean(3, keepdim=True).mean(2, keepdim=True))
    with torch.no_grad():  # evaluation and export keep PyTorch's own conv
        assert pointwise_conv2d(x, weight).is_contiguous(memory_format=memory_format)


def _sandwich_gradients(
    net: OFAMobileNetV3, archs: list[Arch], x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    net.zero_grad()
    for arch in archs:
        net.set_active(arch)
        F.cross_entropy(net(x), y).backward()  # type: ignore[no-untyped-call]
    return {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}


def test_a_sandwich_step_computes_pytorchs_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole supernet, four subnets at 28 px, float64: the same gradients with PyTorch's ops as the oracle."""
    torch.manual_seed(0)
    space = get_space("ofa_mbv3_d234_e346_k357_32px", in_channels=1, num_classes=10)
    net = build_supernet(space).double().train()
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    archs: list[Arch] = [space.max_arch(28), space.min_arch(28), *space.sample(0, 2)]
    archs = [{**a, "r": 28} for a in archs]
    ours = _sandwich_gradients(copy.deepcopy(net), archs, x, y)
    for module in (dynamic, static):
        monkeypatch.setattr(module, "depthwise_conv2d", lambda a, w, s, p: F.conv2d(a, w, None, s, p, 1, a.size(1)))
        monkeypatch.setattr(module, "pointwise_conv2d", lambda a, w, b=None: F.conv2d(a, w, b))
    monkeypatch.setattr(ops, "relu_", F.relu)
    monkeypatch.setattr(ops, "pixel_mean", lambda a: a.mean(3, keepdim=True).mean(2, keepdim=True))
    reference = _sandwich_gradients(copy.deepcopy(net), archs, x, y)
    assert ours.keys() == reference.keys() and len(ours) > 200
    scale = torch.cat([g.flatten() for g in reference.values()]).norm()
    worst = max((ours[k] - reference[k]).norm() / scale for k in reference)
    assert worst < 1e-12
