"""The layers a lookup table times, and their keys in OFA's YAML grammar (spec §10).

Shapes are written ``HxWxC``; a block's ``expand`` is its mid channel count, not the ratio::

    Conv-input:224x224x3-output:112x112x24
    expanded_conv-input:56x56x32-output:28x28x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0
    Conv_1-input:7x7x192-output:7x7x1152
    AvgPool2D-input:7x7x1152-output:1x1x1152
    Conv_2-input:1x1x1152-output:1x1x1536
    Logits-input:1x1x1536-output:1000

A subnet's latency is the sum over its first conv, block 0, every active elastic block and the
four head layers. Pure Python: no torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nas.backbone import BlockSpec, MBV3Backbone, conv_out_size
from nas.space import SearchSpace

KINDS = ("Conv", "expanded_conv", "Conv_1", "AvgPool2D", "Conv_2", "Logits")

_SHAPE = r"(\d+)x(\d+)x(\d+)"
_PATTERNS = {
    "expanded_conv": re.compile(
        rf"expanded_conv-input:{_SHAPE}-output:{_SHAPE}-expand:(\d+)-kernel:(\d+)-stride:(\d+)"
        r"-idskip:([01])-se:([01])-hs:([01])"
    ),
    "Logits": re.compile(rf"Logits-input:{_SHAPE}-output:(\d+)"),
    **{
        kind: re.compile(rf"{kind}-input:{_SHAPE}-output:{_SHAPE}")
        for kind in ("Conv", "Conv_1", "AvgPool2D", "Conv_2")
    },
}


@dataclass(frozen=True)
class LayerSpec:
    """One timed layer, exactly what its key says.

    Attributes:
        kind: one of `KINDS`.
        in_size: input height (= width).
        in_ch: input channels.
        out_size: output height (= width); 1 for Logits.
        out_ch: output channels (classes for Logits).
        mid: expanded width of a block (``expand`` in the key); equal to in_ch for block 0.
        kernel: depthwise kernel of a block.
        stride: stride of a block (of the first conv too, derived from the sizes).
        idskip: the block has an identity shortcut.
        se: the block has squeeze-and-excite.
        hs: the block uses h_swish (else ReLU).
    """

    kind: str
    in_size: int
    in_ch: int
    out_size: int
    out_ch: int
    mid: int = 0
    kernel: int = 0
    stride: int = 1
    idskip: bool = False
    se: bool = False
    hs: bool = False

    @property
    def key(self) -> str:
        """The key in OFA's grammar."""
        inp = f"input:{self.in_size}x{self.in_size}x{self.in_ch}"
        if self.kind == "Logits":
            return f"Logits-{inp}-output:{self.out_ch}"
        out = f"output:{self.out_size}x{self.out_size}x{self.out_ch}"
        if self.kind != "expanded_conv":
            return f"{self.kind}-{inp}-{out}"
        return (
            f"expanded_conv-{inp}-{out}-expand:{self.mid}-kernel:{self.kernel}-stride:{self.stride}"
            f"-idskip:{int(self.idskip)}-se:{int(self.se)}-hs:{int(self.hs)}"
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the layer's input."""
        return self.in_ch, self.in_size, self.in_size

    @classmethod
    def parse(cls, key: str) -> LayerSpec:
        """The layer a key describes.

        Raises:
            ValueError: the key does not follow OFA's grammar.
        """
        kind = key.split("-", 1)[0]
        pattern = _PATTERNS.get(kind)
        found = pattern.fullmatch(key) if pattern else None
        if found is None:
            raise ValueError(f"lookup-table key {key!r} does not follow OFA's grammar (e.g. {_example(kind)!r})")
        v = [int(g) for g in found.groups()]
        if v[0] != v[1] or (kind != "Logits" and v[3] != v[4]):
            raise ValueError(f"lookup-table key {key!r}: only square inputs and outputs are supported")
        if kind == "Logits":
            return cls(kind, v[0], v[2], 1, v[3])
        if kind == "expanded_conv":
            return cls(kind, v[0], v[2], v[3], v[5], v[6], v[7], v[8], bool(v[9]), bool(v[10]), bool(v[11]))
        if kind == "Conv":
            strides = [s for s in (1, 2, 4) if conv_out_size(v[0], s) == v[3]]
            if not strides:
                raise ValueError(f"lookup-table key {key!r}: no stride maps size {v[0]} to {v[3]}")
            return cls(kind, v[0], v[2], v[3], v[5], kernel=3, stride=strides[0])
        return cls(kind, v[0], v[2], v[3], v[5])


def _example(kind: str) -> str:
    examples = {
        "Conv": "Conv-input:224x224x3-output:112x112x24",
        "Conv_1": "Conv_1-input:7x7x192-output:7x7x1152",
        "AvgPool2D": "AvgPool2D-input:7x7x1152-output:1x1x1152",
        "Conv_2": "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits": "Logits-input:1x1x1536-output:1000",
    }
    return examples.get(
        kind, "expanded_conv-input:56x56x32-output:28x28x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0"
    )


def fixed_layers(backbone: MBV3Backbone, resolution: int) -> list[LayerSpec]:
    """First conv, block 0, final expand, pooling, feature mix and classifier at a resolution."""
    b = backbone
    f0 = b.stem_size(resolution)
    last = b.block_sizes(resolution)[-1][1]
    cl, fe, fm = b.stage_widths[-1], b.final_expand_width, b.feature_mix_width
    return [
        LayerSpec("Conv", resolution, b.in_channels, f0, b.stem_width, kernel=3, stride=b.stem_stride),
        LayerSpec(
            "expanded_conv", f0, b.stem_width, f0, b.block0_width, mid=b.stem_width, kernel=3, stride=1,
            idskip=b.stem_width == b.block0_width,
        ),
        LayerSpec("Conv_1", last, cl, last, fe),
        LayerSpec("AvgPool2D", last, fe, 1, fe),
        LayerSpec("Conv_2", 1, fe, 1, fm),
        LayerSpec("Logits", 1, fm, 1, b.num_classes),
    ]  # fmt: skip


def block_layer(spec: BlockSpec, sizes: tuple[int, int], kernel: int, expand_ratio: int) -> LayerSpec:
    """An elastic block with a kernel and expand ratio, at its (input, output) size."""
    return LayerSpec(
        "expanded_conv",
        sizes[0],
        spec.in_channels,
        sizes[1],
        spec.out_channels,
        mid=spec.mid_channels(expand_ratio),
        kernel=kernel,
        stride=spec.stride,
        idskip=spec.has_shortcut,
        se=spec.use_se,
        hs=spec.act == "h_swish",
    )


def table_layers(
    backbone: MBV3Backbone,
    resolutions: Sequence[int],
    kernel_sizes: Sequence[int] | None = None,
    expand_ratios: Sequence[int] | None = None,
) -> dict[str, LayerSpec]:
    """Every distinct layer reachable at the resolutions, by key, in forward order per resolution.

    Kernel sizes and expand ratios default to all the backbone supports.
    """
    ks = backbone.kernel_sizes if kernel_sizes is None else kernel_sizes
    es = backbone.expand_ratios if expand_ratios is None else expand_ratios
    out: dict[str, LayerSpec] = {}
    for r in resolutions:
        fixed = fixed_layers(backbone, r)
        layers = fixed[:2]
        for spec, sizes in zip(backbone.blocks, backbone.block_sizes(r), strict=True):
            layers += [block_layer(spec, sizes, k, e) for k in ks for e in es]
        for layer in [*layers, *fixed[2:]]:
            out.setdefault(layer.key, layer)
    return out


def arch_layers(space: SearchSpace, arch: Mapping[str, Any]) -> list[LayerSpec]:
    """The layers of one subnet, in forward order (their latencies sum to the subnet's)."""
    b = space.backbone
    r = int(arch["r"])
    fixed = fixed_layers(b, r)
    blocks = [
        block_layer(spec, sizes, arch["ks"][spec.index], arch["e"][spec.index])
        for spec, sizes in zip(b.blocks, b.block_sizes(r), strict=True)
        if spec.position < arch["d"][spec.stage]
    ]
    return [*fixed[:2], *blocks, *fixed[2:]]
