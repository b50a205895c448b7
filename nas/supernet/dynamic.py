"""Dynamic layers with OFA's semantics: weights allocated for the largest choice, sliced per subnet.

Every dynamic layer can both run the active sub-layer and hand out the sliced (and, for the
kernel, transformed) tensors of that sub-layer, so the static subnet gets exactly the weights
the dynamic forward uses.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.backbone import BlockSpec, se_channels
from nas.supernet.ops import activate, center_crop, squeeze_excite
from nas.supernet.static import SEConvs, batch_norm
from nas.supernet.training_ops import depthwise_conv2d, pointwise_conv2d

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


class DynamicBatchNorm2d(nn.Module):
    """BatchNorm over the first C channels of a full-width BN (key ``bn.*``).

    In training, batch statistics normalise and the running statistics of the prefix are
    updated in place; the entries past C are untouched.
    """

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.bn = batch_norm(max_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise x over its x.size(1) channels."""
        c, bn = x.size(1), self.bn
        assert bn.running_mean is not None and bn.running_var is not None
        if self.training and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        return F.batch_norm(
            x,
            bn.running_mean[:c],
            bn.running_var[:c],
            bn.weight[:c],
            bn.bias[:c],
            self.training,
            bn.momentum if bn.momentum is not None else 0.1,
            bn.eps,
        )

    def sliced_state(self, channels: int) -> dict[str, Tensor]:
        """State dict of a static BatchNorm2d over the first `channels` channels."""
        state = {name: getattr(self.bn, name)[:channels] for name in BN_KEYS}
        if self.bn.num_batches_tracked is not None:
            state["num_batches_tracked"] = self.bn.num_batches_tracked
        return state

    def permute(self, order: Tensor) -> None:
        """Reorder all channels (affine parameters and running statistics)."""
        for name in BN_KEYS:
            tensor = getattr(self.bn, name)
            tensor.data = tensor.data[order]


class DynamicPointConv(nn.Module):
    """1x1 conv whose output and input channels are prefixes of the allocated ones (key ``conv.weight``)."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False)

    def active_weight(self, out_channels: int, in_channels: int) -> Tensor:
        """The sliced weight [out, in, 1, 1]."""
        return self.conv.weight[:out_channels, :in_channels]


class DynamicDepthwiseConv(nn.Module):
    """Depthwise conv with elastic width and elastic kernel through kernel-transform matrices.

    Weights are allocated at the largest kernel (key ``conv.weight``). For each pair of
    consecutive kernel sizes, big -> small, a learned ``{big}to{small}_matrix`` (small^2 x
    small^2, initialised to the identity) maps the centre crop of the bigger filter to the
    smaller one; a small kernel chains through all bigger ones (OFA's KERNEL_TRANSFORM_MODE=1).
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        max_k = self.kernel_sizes[-1]
        self.conv = nn.Conv2d(max_channels, max_channels, max_k, groups=max_channels, bias=False)
        descending = self.kernel_sizes[::-1]
        self.transforms = list(itertools.pairwise(descending))
        for big, small in reversed(self.transforms):  # OFA's key order: 5to3 before 7to5
            self.register_parameter(f"{big}to{small}_matrix", nn.Parameter(torch.eye(small * small)))

    def active_filter(self, channels: int, kernel_size: int) -> Tensor:
        """The depthwise filter [channels, 1, k, k] of the active sub-layer."""
        weight = self.conv.weight[:channels]
        for big, small in self.transforms:
            if kernel_size > small:
                break
            crop = center_crop(weight, small).reshape(channels, small * small)
            matrix = getattr(self, f"{big}to{small}_matrix")
            weight = F.linear(crop, matrix).reshape(channels, 1, small, small)
        return weight


class DynamicSE(nn.Module):
    """Squeeze-excite on the active width; hidden width md(active // 4) (keys ``fc.reduce``, ``fc.expand``)."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.fc = SEConvs(max_channels, se_channels(max_channels))

    def active_weights(self, channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(reduce weight, reduce bias, expand weight, expand bias) sliced to `channels`."""
        hidden = se_channels(channels)
        reduce, expand = self.fc.reduce, self.fc.expand
        assert reduce.bias is not None and expand.bias is not None
        return (
            reduce.weight[:hidden, :channels],
            reduce.bias[:hidden],
            expand.weight[:channels, :hidden],
            expand.bias[:channels],
        )


class DynamicConvBN(nn.Module):
    """Container giving OFA's key layout: ``conv.*``, ``bn.bn.*`` and (depthwise) ``se.*``."""

    def __init__(self, conv: nn.Module, bn_channels: int, se: DynamicSE | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.bn = DynamicBatchNorm2d(bn_channels)
        self.se = se


class DynamicMBConv(nn.Module):
    """An elastic inverted-residual block: elastic kernel and expand ratio, OFA semantics.

    Attributes:
        spec: the block's fixed skeleton.
        active_kernel: kernel size used by the forward pass.
        active_expand: expand ratio used by the forward pass.
    """

    def __init__(self, spec: BlockSpec, kernel_sizes: tuple[int, ...], expand_ratios: tuple[int, ...]) -> None:
        super().__init__()
        self.spec = spec
        self.expand_ratios = tuple(sorted(expand_ratios))
        m = spec.max_mid
        self.inverted_bottleneck = DynamicConvBN(DynamicPointConv(spec.in_channels, m), m)
        self.depth_conv = DynamicConvBN(DynamicDepthwiseConv(m, kernel_sizes), m, DynamicSE(m) if spec.use_se else None)
        self.point_linear = DynamicConvBN(DynamicPointConv(m, spec.out_channels), spec.out_channels)
        self.active_kernel = max(kernel_sizes)
        self.active_expand = self.expand_ratios[-1]

    def _parts(self) -> tuple[DynamicPointConv, DynamicDepthwiseConv, DynamicPointConv]:
        ib, dw, pl = self.inverted_bottleneck.conv, self.depth_conv.conv, self.point_linear.conv
        assert isinstance(ib, DynamicPointConv) and isinstance(dw, DynamicDepthwiseConv)
        assert isinstance(pl, DynamicPointConv)
        return ib, dw, pl

    def forward(self, x: Tensor) -> Tensor:
        """Run the active sub-layer (no shortcut; the enclosing block adds it)."""
        spec, k = self.spec, self.active_kernel
        m = spec.mid_channels(self.active_expand)
        ib, dw, pl = self._parts()
        y = activate(
            self.inverted_bottleneck.bn(pointwise_conv2d(x, ib.active_weight(m, x.size(1)))), spec.act, inplace=True
        )
        y = depthwise_conv2d(y, dw.active_filter(m, k), spec.stride, k // 2)
        y = activate(self.depth_conv.bn(y), spec.act, inplace=True)
        if self.depth_conv.se is not None:
            rw, rb, ew, eb = self.depth_conv.se.active_weights(m)
            y = squeeze_excite(y, lambda t: pointwise_conv2d(t, rw, rb), lambda t: pointwise_conv2d(t, ew, eb))
        return self.point_linear.bn(pointwise_conv2d(y, pl.active_weight(spec.out_channels, m)))

    def active_state(self, kernel_size: int, expand_ratio: int) -> dict[str, Tensor]:
        """The state dict of the static `MBConvLayer` for this kernel and expand ratio."""
        spec = self.spec
        m = spec.mid_channels(expand_ratio)
        ib, dw, pl = self._parts()
        state = {"inverted_bottleneck.conv.weight": ib.active_weight(m, spec.in_channels)}
        state |= {f"inverted_bottleneck.bn.{k}": v for k, v in self.inverted_bottleneck.bn.sliced_state(m).items()}
        state["depth_conv.conv.weight"] = dw.active_filter(m, kernel_size)
        state |= {f"depth_conv.bn.{k}": v for k, v in self.depth_conv.bn.sliced_state(m).items()}
        if self.depth_conv.se is not None:
            names = ("fc.reduce.weight", "fc.reduce.bias", "fc.expand.weight", "fc.expand.bias")
            for name, tensor in zip(names, self.depth_conv.se.active_weights(m), strict=True):
                state[f"depth_conv.se.{name}"] = tensor
        state["point_linear.conv.weight"] = pl.active_weight(spec.out_channels, m)
        state |= {f"point_linear.bn.{k}": v for k, v in self.point_linear.bn.sliced_state(spec.out_channels).items()}
        return state

    @torch.no_grad()
    def sort_channels(self, expand_stage: int) -> None:
        """OFA's ``re_organize_middle_weights``: put important expanded channels first.

        Importance of an expanded channel is the L1 norm of its column in the projection.
        When ``expand_stage`` > 0, channels already trained inside the ``expand_stage`` widest
        widths are kept inside them (nested order), so earlier phases are not undone. The SE
        hidden channels are then sorted by the L1 norm of their expand weights.

        Args:
            expand_stage: how many elastic-expand phases have started (0 = plain sort).
        """
        ib, dw, pl = self._parts()
        importance = pl.conv.weight.abs().sum(dim=(0, 2, 3))
        if expand_stage > 0:
            targets = [self.spec.mid_channels(e) for e in reversed(self.expand_ratios)]
            right, base = len(importance), -len(targets) * 1e5
            for left in targets[: expand_stage + 1]:
                importance[left:right] += base
                base += 1e5
                right = left
        order = torch.sort(importance, dim=0, descending=True).indices
        pl.conv.weight.data = pl.conv.weight.data[:, order]
        self.depth_conv.bn.permute(order)
        dw.conv.weight.data = dw.conv.weight.data[order]
        self.inverted_bottleneck.bn.permute(order)
        ib.conv.weight.data = ib.conv.weight.data[order]
        se = self.depth_conv.se
        if se is not None:
            reduce, expand = se.fc.reduce, se.fc.expand
            assert reduce.bias is not None and expand.bias is not None
            expand.weight.data = expand.weight.data[order]
            expand.bias.data = expand.bias.data[order]
            reduce.weight.data = reduce.weight.data[:, order]
            se_order = torch.sort(expand.weight.abs().sum(dim=(0, 2, 3)), descending=True).indices
            expand.weight.data = expand.weight.data[:, se_order]
            reduce.weight.data = reduce.weight.data[se_order]
            reduce.bias.data = reduce.bias.data[se_order]
