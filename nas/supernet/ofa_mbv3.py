"""The OFA-MobileNetV3 supernet: one set of weights, any subnet of its search space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from nas.space import Arch, SearchSpace
from nas.supernet.checkpoint import merge_ofa_state_dict
from nas.supernet.dynamic import DynamicMBConv
from nas.supernet.static import MBConvLayer, MBV3Network, MobileNetV3, ResidualBlock, build_subnet


class OFAMobileNetV3(MBV3Network):
    """Elastic MobileNetV3 (kernel, expand ratio, depth; resolution is the input's size).

    The state dict has OFA's keys and shapes, so OFA's checkpoints load (`load_state_dict`
    also takes the legacy ``mobile_inverted_conv`` names). `set_active` picks the subnet the
    forward pass runs; `extract` returns it as a static `MobileNetV3` with identical outputs.

    Attributes:
        space: the search space whose archs this supernet accepts.
        metadata: provenance of the weights (e.g. the training data), JSON-ready; training sets it.
    """

    def __init__(self, space: SearchSpace) -> None:
        b = space.backbone
        block0 = ResidualBlock(
            MBConvLayer(b.stem_width, b.block0_width, 3, 1, b.stem_width, "relu", False, expand_ratio=1),
            shortcut=b.stem_width == b.block0_width,
        )
        elastic = [
            ResidualBlock(DynamicMBConv(spec, b.kernel_sizes, b.expand_ratios), spec.has_shortcut) for spec in b.blocks
        ]
        super().__init__(b, [block0, *elastic])
        self.space = space
        self.active_depths = [b.max_depth] * b.n_stages
        self.active_arch: Arch = space.max_arch()
        self.metadata: dict[str, Any] = {}

    def dynamic_blocks(self) -> list[DynamicMBConv]:
        """The elastic blocks (supernet blocks 1..n), in order."""
        return [block.conv for block in list(self.blocks)[1:] if isinstance(block.conv, DynamicMBConv)]

    def set_active(self, arch: Mapping[str, Any]) -> Arch:
        """Make the forward pass run this subnet; returns the canonical arch.

        Raises:
            ValueError: the arch is not in this supernet's space, naming the field.
        """
        canon = self.space.canonical(arch)
        for block in self.dynamic_blocks():
            block.active_kernel = canon["ks"][block.spec.index]
            block.active_expand = canon["e"][block.spec.index]
        self.active_depths = list(canon["d"])
        self.active_arch = canon
        return canon

    def active_blocks(self) -> list[nn.Module]:
        """Block 0 and, per stage, the first `depth` elastic blocks."""
        blocks = list(self.blocks)
        return [blocks[0]] + [
            block
            for block in blocks[1:]
            if isinstance(block.conv, DynamicMBConv)
            and block.conv.spec.position < self.active_depths[block.conv.spec.stage]
        ]

    def subnet_state_dict(self, arch: Mapping[str, Any]) -> dict[str, Tensor]:
        """The state dict (OFA's static subnet keys, detached copies) of a subnet."""
        canon = self.space.canonical(arch)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("blocks.")}
        state |= {k: v for k, v in self.blocks[0].state_dict(prefix="blocks.0.").items()}
        index = 1
        for block in self.dynamic_blocks():
            spec = block.spec
            if spec.position >= canon["d"][spec.stage]:
                continue
            active = block.active_state(canon["ks"][spec.index], canon["e"][spec.index])
            state |= {f"blocks.{index}.conv.{k}": v for k, v in active.items()}
            index += 1
        return {k: v.detach().clone() for k, v in state.items()}

    def extract(self, arch: Mapping[str, Any] | None = None) -> MobileNetV3:
        """A static subnet with this supernet's weights (the active subnet if `arch` is None).

        The result is independent of the supernet (its own tensors) and in the same
        train/eval mode.
        """
        arch = self.active_arch if arch is None else arch
        subnet = build_subnet(self.backbone, self.space.canonical(arch))
        subnet.load_state_dict(self.subnet_state_dict(arch))
        subnet.train(self.training)
        return subnet

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False) -> Any:
        """Load an OFA checkpoint's state dict, all or nothing.

        Accepts OFA's current keys and the legacy ``mobile_inverted_conv`` / collapsed or doubled
        dynamic segments. Kernel-transform matrices and BN counters may be missing (they keep
        their values); with ``strict`` any other missing key is an error.

        Raises:
            ValueError: unknown keys, wrong shapes (another space or width) or missing keys,
                listing the first ones; the supernet is left unchanged.
        """
        merged = merge_ofa_state_dict(self.state_dict(), state_dict, strict=strict, name=self.space.name)
        return super().load_state_dict(merged, strict=True, assign=assign)

    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Reorganise every elastic block's expanded channels by importance (see `DynamicMBConv.sort_channels`)."""
        for block in self.dynamic_blocks():
            block.sort_channels(expand_stage)


def build_supernet(
    space: str | SearchSpace, *, num_classes: int | None = None, in_channels: int | None = None
) -> OFAMobileNetV3:
    """A freshly initialised supernet for a registered preset name or a `SearchSpace`.

    Args:
        space: preset name (see `nas.spaces.list_spaces`) or a space (possibly restricted).
        num_classes: classifier outputs (default: the space's).
        in_channels: input channels (default: the space's).
    """
    if isinstance(space, str):
        from nas.spaces import get_space

        space = get_space(space)
    return OFAMobileNetV3(space.with_io(num_classes=num_classes, in_channels=in_channels))
