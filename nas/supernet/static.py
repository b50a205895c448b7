"""Static (extracted) OFA-MobileNetV3 subnets: plain conv/BN layers with OFA's state-dict keys.

A `MobileNetV3` built by `build_subnet(backbone, arch)` has exactly the keys and shapes of the
subnet OFA's `get_active_subnet()` returns, so its weights can be exchanged with OFA, and
`net_config()` returns OFA's config dict for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.backbone import MBV3Backbone, se_channels
from nas.supernet.ops import activate, global_avg_pool, squeeze_excite
from nas.supernet.training_ops import depthwise_conv2d, pointwise_conv2d

BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with OFA's settings (momentum 0.1, eps 1e-5)."""
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


def _conv_config(conv: nn.Conv2d, *, use_bn: bool, act: str | None, name: str = "ConvLayer") -> dict[str, Any]:
    return {
        "name": name,
        "kernel_size": conv.kernel_size[0],
        "stride": conv.stride[0],
        "dilation": 1,
        "groups": 1,
        "bias": False,
        "has_shuffle": False,
        "use_se": False,
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "use_bn": use_bn,
        "act_func": act,
        "dropout_rate": 0,
        "ops_order": "weight_bn_act",
    }


class SEConvs(nn.Module):
    """The two 1x1 convs (with bias) of a squeeze-and-excite, with OFA's names ``reduce`` and ``expand``."""

    reduce: nn.Conv2d
    expand: nn.Conv2d

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)


class SqueezeExcite(nn.Module):
    """SE with OFA's key names ``fc.reduce`` and ``fc.expand``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc = SEConvs(channels, hidden)

    def forward(self, x: Tensor) -> Tensor:
        """Scale the channels of x by their excitation."""
        return squeeze_excite(x, self.fc.reduce, self.fc.expand)


class ConvBNAct(nn.Module):
    """conv -> optional BN -> activation -> optional SE, with keys ``conv.*``, ``bn.*``, ``se.*``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        *,
        groups: int = 1,
        use_bn: bool = True,
        act: str | None = None,
        se_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = batch_norm(out_channels) if use_bn else None
        self.act = act
        self.se = SqueezeExcite(out_channels, se_hidden) if se_hidden else None

    @torch.no_grad()
    def fold_bn(self) -> None:
        """Fold the BN's running statistics and affine parameters into the conv (for inference only)."""
        if self.bn is None:
            return
        bn, conv = self.bn, self.conv
        assert bn.running_mean is not None and bn.running_var is not None
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        # Elementwise ops keep the weight's memory format (channels-last stays channels-last).
        conv.weight = nn.Parameter(conv.weight * scale[:, None, None, None])
        conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
        self.bn = None

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer."""
        x = self._convolve(x)
        if self.bn is not None:
            x = self.bn(x)
        x = activate(x, self.act, inplace=True)
        return self.se(x) if self.se is not None else x

    def _convolve(self, x: Tensor) -> Tensor:
        """The conv; in training, 1x1 and depthwise ones take `nas.supernet.training_ops` (same result, faster)."""
        conv = self.conv
        if self.training and conv.bias is None:
            if conv.kernel_size == (1, 1) and conv.groups == 1:
                return pointwise_conv2d(x, conv.weight)
            if conv.groups == conv.in_channels == conv.out_channels:
                return depthwise_conv2d(x, conv.weight, conv.stride[0], conv.kernel_size[0] // 2)
        result: Tensor = conv(x)
        return result


class MBConvLayer(nn.Module):
    """Inverted residual: 1x1 expand (absent at ratio 1) -> depthwise k x k (+SE) -> 1x1 project."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        mid_channels: int,
        act: str,
        use_se: bool,
        expand_ratio: int,
    ) -> None:
        super().__init__()
        self.expand_ratio = expand_ratio
        self.inverted_bottleneck = ConvBNAct(in_channels, mid_channels, act=act) if expand_ratio != 1 else None
        self.depth_conv = ConvBNAct(
            mid_channels,
            mid_channels,
            kernel_size,
            stride,
            groups=mid_channels,
            act=act,
            se_hidden=se_channels(mid_channels) if use_se else None,
        )
        self.point_linear = ConvBNAct(mid_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block's convolutions (no shortcut)."""
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))

    def config(self) -> dict[str, Any]:
        """OFA's config dict of this layer."""
        dw = self.depth_conv.conv
        cfg: dict[str, Any] = {
            "name": "MBConvLayer",
            "in_channels": self.point_linear.conv.in_channels
            if self.inverted_bottleneck is None
            else self.inverted_bottleneck.conv.in_channels,
            "out_channels": self.point_linear.conv.out_channels,
            "kernel_size": dw.kernel_size[0],
            "stride": dw.stride[0],
            "expand_ratio": self.expand_ratio,
            "mid_channels": None if self.inverted_bottleneck is None else dw.in_channels,
            "act_func": self.depth_conv.act,
            "use_se": self.depth_conv.se is not None,
        }
        if self.inverted_bottleneck is None:
            cfg["groups"] = None
        return cfg


class ResidualBlock(nn.Module):
    """An MBConv layer (static or dynamic) plus an optional identity shortcut (keys ``conv.*``)."""

    def __init__(self, conv: nn.Module, shortcut: bool) -> None:
        super().__init__()
        self.conv = conv
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        out = self.conv(x)
        return out + x if self.shortcut else out

    def config(self) -> dict[str, Any]:
        """OFA's config dict of this block (static blocks only)."""
        if not isinstance(self.conv, MBConvLayer):
            raise TypeError("only static blocks have an OFA config; extract the subnet first")
        channels = self.conv.point_linear.conv.out_channels
        shortcut = {
            "name": "IdentityLayer",
            "in_channels": channels,
            "out_channels": channels,
            "use_bn": False,
            "act_func": None,
            "dropout_rate": 0,
            "ops_order": "weight_bn_act",
        }
        return {
            "name": "ResidualBlock",
            "conv": self.conv.config(),
            "shortcut": shortcut if self.shortcut else None,
        }


class Classifier(nn.Module):
    """Dropout (if p > 0) then a linear layer, with keys ``linear.*``."""

    def __init__(self, in_features: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Classify flattened features."""
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return self.linear(x)


class MBV3Network(nn.Module):
    """Stem, blocks and head of a MobileNetV3; subclasses say which blocks run."""

    def __init__(self, backbone: MBV3Backbone, blocks: list[ResidualBlock]) -> None:
        super().__init__()
        b = self.backbone = backbone
        self.first_conv = ConvBNAct(b.in_channels, b.stem_width, 3, b.stem_stride, act="h_swish")
        self.blocks = nn.ModuleList(blocks)
        last = b.stage_widths[-1]
        self.final_expand_layer = ConvBNAct(last, b.final_expand_width, act="h_swish")
        self.feature_mix_layer = ConvBNAct(b.final_expand_width, b.feature_mix_width, use_bn=False, act="h_swish")
        self.classifier = Classifier(b.feature_mix_width, b.num_classes, b.dropout)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """OFA's "he_fout" initialisation: convs N(0, 2/(k*k*out)), BN (1, 0), linear U(+-1/sqrt(in)), biases 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0]
                module.weight.normal_(0.0, math.sqrt(2.0 / (k * k * module.out_channels)))
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound)
                if module.bias is not None:
                    module.bias.zero_()

    def fold_batch_norms(self) -> MBV3Network:
        """Fold every BN into its conv, in place, and return self: the same outputs in eval mode, faster.

        The network can no longer be trained or recalibrated afterwards; fold a copy (e.g. a freshly
        extracted subnet) for evaluation.
        """
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.fold_bn()
        return self.eval()

    def active_blocks(self) -> list[nn.Module]:
        """The blocks the forward pass runs, in order."""
        return list(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images (N, C, R, R)."""
        x = self.first_conv(x)
        for block in self.active_blocks():
            x = block(x)
        x = self.feature_mix_layer(global_avg_pool(self.final_expand_layer(x)))
        return self.classifier(x.flatten(1))


class MobileNetV3(MBV3Network):
    """A static MobileNetV3 subnet, OFA-compatible in keys, shapes and config."""

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load a subnet state dict; OFA's legacy ``mobile_inverted_conv`` key names are accepted too."""
        renamed = {k.replace(".mobile_inverted_conv.", ".conv."): v for k, v in state_dict.items()}
        return super().load_state_dict(renamed, strict=strict, assign=assign)

    def net_config(self) -> dict[str, Any]:
        """OFA's ``config`` dict for this network (as `get_active_net_config()` gives it)."""
        classifier = self.classifier.linear
        return {
            "name": "MobileNetV3",
            "bn": {"momentum": BN_MOMENTUM, "eps": BN_EPS, "ws_eps": None},
            "first_conv": _conv_config(self.first_conv.conv, use_bn=True, act="h_swish"),
            "blocks": [block.config() for block in self.blocks if isinstance(block, ResidualBlock)],
            "final_expand_layer": _conv_config(self.final_expand_layer.conv, use_bn=True, act="h_swish"),
            "feature_mix_layer": _conv_config(self.feature_mix_layer.conv, use_bn=False, act="h_swish"),
            "classifier": {
                "name": "LinearLayer",
                "in_features": classifier.in_features,
                "out_features": classifier.out_features,
                "bias": True,
                "use_bn": False,
                "act_func": None,
                "dropout_rate": self.classifier.dropout,
                "ops_order": "weight_bn_act",
            },
        }


def build_subnet(backbone: MBV3Backbone, arch: Mapping[str, Any]) -> MobileNetV3:
    """A freshly initialised static subnet of `backbone` with the shapes of `arch`.

    `arch` must already be valid (see `SearchSpace.validate`); its resolution does not affect
    the module. Use `OFAMobileNetV3.extract` for a subnet with the supernet's weights.
    """
    b = backbone
    blocks = [
        ResidualBlock(
            MBConvLayer(b.stem_width, b.block0_width, 3, 1, b.stem_width, "relu", False, expand_ratio=1),
            shortcut=b.stem_width == b.block0_width,
        )
    ]
    for spec in b.blocks:
        if spec.position >= arch["d"][spec.stage]:
            continue
        e = arch["e"][spec.index]
        layer = MBConvLayer(
            spec.in_channels,
            spec.out_channels,
            arch["ks"][spec.index],
            spec.stride,
            spec.mid_channels(e),
            spec.act,
            spec.use_se,
            expand_ratio=e,
        )
        blocks.append(ResidualBlock(layer, spec.has_shortcut))
    return MobileNetV3(backbone, blocks)
