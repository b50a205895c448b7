"""The fixed skeleton of an OFA-MobileNetV3 network: widths, strides, activations, SE placement.

A `MBV3Backbone` says everything about a supernet that does not change from one subnet to the
next. The elastic choices the supernet allocates weights for (kernel sizes, expand ratios,
depths) are part of it too, because they fix the shapes of the weights; a `SearchSpace` may
restrict them further without changing the weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, as OFA (and TF's MobileNet code) does.

    The result never drops below 90% of `value`.

    Args:
        value: the unrounded channel count.
        divisor: the multiple to round to.
        min_value: the smallest allowed result (defaults to `divisor`).

    Returns:
        The rounded channel count.
    """
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_out_size(size: int, stride: int) -> int:
    """Spatial output size of a conv with odd kernel, padding k//2 and the given stride."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class BlockSpec:
    """One physical elastic block (supernet blocks 1..n_blocks).

    Attributes:
        index: position among the elastic blocks, 0-based (the search-space slot).
        stage: the stage this block belongs to, 0-based.
        position: the position inside its stage, 0-based; the block runs iff position < depth.
        in_channels: channels entering the block (fixed: output widths are never elastic).
        out_channels: channels leaving the block.
        stride: stride of the depthwise conv.
        act: activation name, "relu" or "h_swish".
        use_se: whether the block has squeeze-and-excite.
        max_mid: the widest expanded width, which the weights are allocated for.
    """

    index: int
    stage: int
    position: int
    in_channels: int
    out_channels: int
    stride: int
    act: str
    use_se: bool
    max_mid: int

    @property
    def has_shortcut(self) -> bool:
        """Identity shortcut iff stride 1 and equal widths (OFA's rule)."""
        return self.stride == 1 and self.in_channels == self.out_channels

    def mid_channels(self, expand_ratio: float) -> int:
        """Expanded width for an expand ratio: make_divisible(round(in * e))."""
        return make_divisible(round(self.in_channels * expand_ratio))


def se_channels(mid_channels: int) -> int:
    """Hidden width of the squeeze-and-excite of a block whose active expanded width is `mid_channels`."""
    return make_divisible(mid_channels // 4)


@dataclass(frozen=True)
class MBV3Backbone:
    """Skeleton of an OFA-MobileNetV3 supernet.

    Attributes:
        stem_width: output channels of the first conv.
        stem_stride: stride of the first conv.
        block0_width: width of the fixed first block (depthwise-separable, ratio 1).
        stage_widths: output width of each elastic stage.
        stage_strides: stride of the first block of each stage.
        stage_acts: activation of each stage ("relu" or "h_swish").
        stage_se: whether each stage uses squeeze-and-excite.
        final_expand_width: channels of the 1x1 conv after the last stage.
        feature_mix_width: channels of the 1x1 conv after global pooling.
        kernel_sizes: depthwise kernel sizes the weights support, ascending.
        expand_ratios: expand ratios the weights support, ascending.
        depths: stage depths the weights support, ascending; the largest is the blocks per stage.
        in_channels: channels of the input image.
        num_classes: outputs of the classifier.
        dropout: dropout before the classifier (0 for OFA's model-zoo nets).
    """

    stem_width: int
    stem_stride: int
    block0_width: int
    stage_widths: tuple[int, ...]
    stage_strides: tuple[int, ...]
    stage_acts: tuple[str, ...]
    stage_se: tuple[bool, ...]
    final_expand_width: int
    feature_mix_width: int
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    depths: tuple[int, ...]
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.stage_widths)
        for field in ("stage_strides", "stage_acts", "stage_se"):
            if len(getattr(self, field)) != n:
                raise ValueError(f"{field} must have one entry per stage ({n})")
        if self.in_channels < 1 or self.num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, got {self.in_channels} and {self.num_classes}")
        if any(k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd, got {self.kernel_sizes}")

    @property
    def n_stages(self) -> int:
        """Number of elastic stages."""
        return len(self.stage_widths)

    @property
    def max_depth(self) -> int:
        """Physical blocks per stage."""
        return max(self.depths)

    @property
    def n_blocks(self) -> int:
        """Number of elastic blocks (search-space slots)."""
        return self.n_stages * self.max_depth

    @cached_property
    def blocks(self) -> tuple[BlockSpec, ...]:
        """The elastic blocks, in forward order."""
        specs: list[BlockSpec] = []
        in_ch = self.block0_width
        for stage, (width, stride, act, se) in enumerate(
            zip(self.stage_widths, self.stage_strides, self.stage_acts, self.stage_se, strict=True)
        ):
            for position in range(self.max_depth):
                specs.append(
                    BlockSpec(
                        index=len(specs),
                        stage=stage,
                        position=position,
                        in_channels=in_ch,
                        out_channels=width,
                        stride=stride if position == 0 else 1,
                        act=act,
                        use_se=se,
                        max_mid=make_divisible(round(in_ch * max(self.expand_ratios))),
                    )
                )
                in_ch = width
        return tuple(specs)

    def stem_size(self, resolution: int) -> int:
        """Spatial size after the first conv (and block 0, which has stride 1)."""
        return conv_out_size(resolution, self.stem_stride)

    def block_sizes(self, resolution: int) -> tuple[tuple[int, int], ...]:
        """(input size, output size) of every elastic block at an input resolution.

        Skipped blocks never change the size, since the first block of each stage always runs.
        """
        size = self.stem_size(resolution)
        sizes = []
        for spec in self.blocks:
            out = conv_out_size(size, spec.stride)
            sizes.append((size, out))
            size = out
        return tuple(sizes)

    def with_io(self, *, in_channels: int | None = None, num_classes: int | None = None) -> MBV3Backbone:
        """A copy with another number of input channels and/or classes."""
        return dataclasses.replace(
            self,
            in_channels=self.in_channels if in_channels is None else in_channels,
            num_classes=self.num_classes if num_classes is None else num_classes,
        )
