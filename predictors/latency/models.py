"""Static torch modules for timed layers and subnets, exported to ONNX bytes (imports torch).

Layers are built from the supernet's own ops (`nas.supernet.static`), so a table times what a
subnet runs; weights are freshly initialised (latency does not depend on their values).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from nas.export import export_onnx
from nas.space import SearchSpace
from nas.supernet.ops import global_avg_pool
from nas.supernet.static import ConvBNAct, MBConvLayer, ResidualBlock, build_subnet
from predictors.latency.keys import LayerSpec


class _GlobalAvgPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return global_avg_pool(x)


class _Logits(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


def layer_module(layer: LayerSpec) -> nn.Module:
    """A static module computing `layer` (input (N, C, H, W) as `layer.input_shape` says)."""
    if layer.kind == "Conv":
        return ConvBNAct(layer.in_ch, layer.out_ch, layer.kernel, layer.stride, act="h_swish")
    if layer.kind == "expanded_conv":
        # MBConvLayer only asks whether the ratio is 1 (no expand conv); block 0 has mid == in_ch.
        ratio = 1 if layer.mid == layer.in_ch else 2
        act = "h_swish" if layer.hs else "relu"
        conv = MBConvLayer(layer.in_ch, layer.out_ch, layer.kernel, layer.stride, layer.mid, act, layer.se, ratio)
        return ResidualBlock(conv, shortcut=layer.idskip)
    if layer.kind == "Conv_1":
        return ConvBNAct(layer.in_ch, layer.out_ch, act="h_swish")
    if layer.kind == "AvgPool2D":
        return _GlobalAvgPool()
    if layer.kind == "Conv_2":
        return ConvBNAct(layer.in_ch, layer.out_ch, use_bn=False, act="h_swish")
    if layer.kind == "Logits":
        return _Logits(layer.in_ch, layer.out_ch)
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def onnx_bytes(module: nn.Module, input_shape: tuple[int, int, int]) -> bytes:
    """`nas.export.export_onnx` of a module, as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        return export_onnx(module, Path(tmp) / "model.onnx", input_shape).read_bytes()


def layer_onnx(layer: LayerSpec) -> bytes:
    """ONNX bytes of one timed layer."""
    return onnx_bytes(layer_module(layer), layer.input_shape)


def subnet_onnx(space: SearchSpace, arch: Mapping[str, Any]) -> bytes:
    """ONNX bytes of a whole subnet (fresh weights), input (N, C, r, r)."""
    arch = space.canonical(arch)
    b = space.backbone
    return onnx_bytes(build_subnet(b, arch), (b.in_channels, arch["r"], arch["r"]))
