"""The supernet's convolutions and ReLU as a training step computes them, faster on CPUs than PyTorch's own.

Each gives what its PyTorch counterpart gives, up to floating-point summation order, and falls back
to it when no gradient is recorded (evaluation, export), so inference graphs are unchanged.

`pixel_mean` averages a channels-last map as its (N, H*W, C) view: PyTorch's mean over the last
dims takes a strided path there (AVX2, 128x384x2x2: 3.2 ms against 0.5 ms, forward and backward,
for OFA's mean over W then H).

`relu_` computes ReLU's backward over the channels-last memory as one flat tensor: PyTorch's
``threshold_backward`` takes a slow strided path for channels-last tensors (AVX2, 128x96x14x14:
7.9 ms against 1.4 ms).

`pointwise_conv2d` runs a 1x1 convolution as a matrix product over the channels-last pixels:
oneDNN's 1x1 convolution and its backward are up to 2.7x slower than the same GEMM on the
small feature maps of a 32 px supernet (AVX2, batch 128: 16->96 channels at 14x14, 31.6 ms
against 12.0 ms; the 384->512 head at 1x1, 10.4 against 3.9 ms, forward and backward).

`depthwise_conv2d`: on CPUs, oneDNN computes the weight gradient of a 5x5 or 7x7 depthwise convolution over a small
feature map (the late stages of a 32 px supernet: 2x2 to 7x7) up to 20x slower than the forward
and input gradient together: most of the kernel's taps fall on padding. `depthwise_conv2d`
computes the same gradient as a batched matrix product instead:

    pairs[c, o, i] = sum_n grad[n, c, o] * x[n, c, i]      (every output o, input i position)
    grad_w[c, t]   = sum over (o, i) with i = o * stride + t - padding of pairs[c, o, i]

The second line is a fixed 0/1 matrix (`tap_map`). The forward, the input gradient and every other
shape use PyTorch's own kernels. Results equal autograd's up to floating-point summation order.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

PAIRWISE_MAX_PIXELS = 49
"""Feature maps of at most this many pixels (7x7) take the pairwise weight gradient for 5x5 and larger kernels."""
PAIRWISE_MIN_KERNEL = 5
"""oneDNN's 3x3 weight gradient is fast from 3x3 maps up (AVX2: 0.3 ms against the pairwise 1.6 ms, 192 channels)."""
PAIRWISE_ANY_KERNEL_PIXELS = 4
"""Maps of at most this many pixels (2x2) take it for every kernel (3x3 at 2x2: 9.7 ms against 0.5 ms)."""


def uses_pairwise_gradient(kernel: int, height: int, width: int) -> bool:
    """Whether the weight gradient of a `kernel` depthwise conv over `height` x `width` is the pairwise one."""
    pixels = height * width
    return pixels <= PAIRWISE_ANY_KERNEL_PIXELS or (kernel >= PAIRWISE_MIN_KERNEL and pixels <= PAIRWISE_MAX_PIXELS)


@functools.lru_cache(maxsize=256)
def tap_map(height: int, width: int, kernel: int, stride: int, padding: int) -> Tensor:
    """The 0/1 matrix that sums (output, input) position pairs into kernel taps.

    Row ``(o, i)`` (output position o of the strided map, input position i, both row-major) has a
    1 in column ``t = dy * kernel + dx`` when input i lies under tap t of the window at output o.
    """
    out_h = (height + 2 * padding - kernel) // stride + 1
    out_w = (width + 2 * padding - kernel) // stride + 1
    oy, ox, iy, ix = torch.meshgrid(
        torch.arange(out_h), torch.arange(out_w), torch.arange(height), torch.arange(width), indexing="ij"
    )
    dy, dx = iy - oy * stride + padding, ix - ox * stride + padding
    inside = ((dy >= 0) & (dy < kernel) & (dx >= 0) & (dx < kernel)).reshape(-1)
    mapping = torch.zeros(out_h * out_w * height * width, kernel * kernel)
    rows = torch.arange(mapping.shape[0])[inside]
    mapping[rows, (dy * kernel + dx).reshape(-1)[inside]] = 1.0
    return mapping


def pairwise_weight_grad(grad: Tensor, x: Tensor, kernel: int, stride: int, padding: int) -> Tensor:
    """The weight gradient of a depthwise conv, shaped like its weight (C, 1, k, k)."""
    n, c, h, w = x.shape
    out_pixels = grad.shape[2] * grad.shape[3]
    # contiguous per channel: bmm over channel-strided views copies every slice on its own
    grads = grad.permute(1, 2, 3, 0).reshape(c, out_pixels, n).contiguous()
    inputs = x.permute(1, 0, 2, 3).reshape(c, n, h * w).contiguous()
    pairs = torch.bmm(grads, inputs)
    mapping = tap_map(h, w, kernel, stride, padding).to(device=x.device, dtype=x.dtype)
    return (pairs.reshape(c, -1) @ mapping).reshape(c, 1, kernel, kernel)


class _DepthwiseConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, stride: int, padding: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.size(1))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        kernel, stride, padding = weight.shape[-1], ctx.stride, ctx.padding
        want_input, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        pairwise = want_weight and uses_pairwise_gradient(kernel, x.shape[2], x.shape[3])
        grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, [stride, stride], [padding, padding], [1, 1], False, [0, 0], x.size(1),
            [want_input, want_weight and not pairwise, False],
        )  # fmt: skip
        if pairwise:
            grad_weight = pairwise_weight_grad(grad, x, kernel, stride, padding)
        return grad_input, grad_weight, None, None


def recording() -> bool:
    """Whether a training step is running: gradients recorded, and no ONNX export or trace (their graphs keep convs)."""
    return torch.is_grad_enabled() and not torch._C._get_tracing_state() and not torch.onnx.is_in_onnx_export()


def pointwise_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias)`` for a 1x1 `weight` (C_out, C_in, 1, 1), as a matrix product when training.

    The result is channels-last (a view of the (N, H, W, C_out) product).
    """
    if not recording():
        return F.conv2d(x, weight, bias)
    return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)


def depthwise_conv2d(x: Tensor, weight: Tensor, stride: int, padding: int) -> Tensor:
    """``F.conv2d(x, weight, None, stride, padding, 1, groups=x.size(1))`` with a faster weight gradient.

    Args:
        x: input (N, C, H, W), any memory format.
        weight: the depthwise filter (C, 1, k, k), k odd.
        stride: the stride of both spatial dims.
        padding: zero padding on every side.
    """
    if not recording() or not (x.requires_grad or weight.requires_grad):
        return F.conv2d(x, weight, None, stride, padding, 1, x.size(1))
    out: Tensor = _DepthwiseConv2d.apply(x, weight, stride, padding)  # type: ignore[no-untyped-call]
    return out


def pixel_mean(x: Tensor) -> Tensor:
    """The mean of (N, C, H, W) `x` over H and W, shaped (N, C, 1, 1)."""
    if not x.is_contiguous(memory_format=torch.channels_last):
        return x.mean((2, 3), keepdim=True)
    n, c, h, w = x.shape
    return _flat_channels_last(x).reshape(n, h * w, c).mean(1).view(n, c, 1, 1)


def _flat_channels_last(t: Tensor) -> Tensor:
    """The (N, H, W, C) view of a channels-last 4-D tensor: contiguous, so elementwise kernels vectorise."""
    return t.permute(0, 2, 3, 1)


class _ReLUInPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clamp_min_(0.0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        channels_last = torch.channels_last
        if (
            out.dim() == 4
            and out.is_contiguous(memory_format=channels_last)
            and grad.is_contiguous(memory_format=channels_last)
        ):
            flat = torch.ops.aten.threshold_backward(_flat_channels_last(grad), _flat_channels_last(out), 0.0)
            return flat.permute(0, 3, 1, 2)
        result: Tensor = torch.ops.aten.threshold_backward(grad, out, 0.0)
        return result


def relu_(x: Tensor) -> Tensor:
    """``F.relu(x, inplace=True)`` with a faster backward for channels-last tensors."""
    if not recording() or not x.requires_grad:
        return F.relu(x, inplace=True)
    out: Tensor = _ReLUInPlace.apply(x)  # type: ignore[no-untyped-call]
    return out
