"""Built-in OFA-MobileNetV3 presets.

``ofa_mbv3_d234_e346_k357_w1.0`` and ``..._w1.2`` are exactly the ImageNet spaces of OFA's model
zoo (Cai et al., "Once-for-All", ICLR 2020): 5 elastic stages of up to 4 blocks, kernel 3/5/7,
expand 3/4/6, depth 2/3/4, resolution 128..224 in steps of 4.

``ofa_mbv3_d234_e346_k357_32px`` has the same elastic dimensions, scaled down for 28-32 px
images (Fashion-MNIST, MNIST, CIFAR-10); its sizing is measured in BENCHMARKS.md.
"""

from __future__ import annotations

from nas.backbone import MBV3Backbone, make_divisible
from nas.space import SearchSpace
from nas.spaces import register_space

OFA_BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
"""first_conv, block0, stages 1-5, final_expand, feature_mix (OFA's `base_stage_width`)."""

KERNEL_SIZES = (3, 5, 7)
EXPAND_RATIOS = (3, 4, 6)
DEPTHS = (2, 3, 4)
STAGE_ACTS = ("relu", "relu", "h_swish", "h_swish", "h_swish")
STAGE_SE = (False, True, False, True, True)
SMALL_INPUT_WIDTHS = (16, 16, 16, 24, 40, 48, 64, 384, 512)
"""stem, block 0, stages 1-5, final expand, feature mix of the 32 px preset."""
DEMO_SPACE = "ofa_mbv3_d234_e346_k357_demo"
DEMO_WIDTHS = (8, 8, 8, 8, 16, 16, 16, 64, 128)
DEMO_RESOLUTIONS = (12, 16, 20, 24)


def ofa_backbone(width_mult: float) -> MBV3Backbone:
    """OFA's ImageNet MobileNetV3 supernet skeleton at a width multiplier."""
    widths = [make_divisible(w * width_mult) for w in OFA_BASE_WIDTHS]
    return MBV3Backbone(
        stem_width=widths[0],
        stem_stride=2,
        block0_width=widths[1],
        stage_widths=tuple(widths[2:7]),
        stage_strides=(2, 2, 2, 1, 2),
        stage_acts=STAGE_ACTS,
        stage_se=STAGE_SE,
        final_expand_width=widths[7],
        feature_mix_width=widths[8],
        kernel_sizes=KERNEL_SIZES,
        expand_ratios=EXPAND_RATIOS,
        depths=DEPTHS,
        in_channels=3,
        num_classes=1000,
    )


def _ofa_space(name: str, width_mult: float) -> SearchSpace:
    return SearchSpace(
        name=name,
        backbone=ofa_backbone(width_mult),
        kernel_sizes=KERNEL_SIZES,
        expand_ratios=EXPAND_RATIOS,
        depths=DEPTHS,
        resolutions=tuple(range(128, 225, 4)),
    )


@register_space("ofa_mbv3_d234_e346_k357_w1.0")
def ofa_mbv3_w10() -> SearchSpace:
    """OFA-MobileNetV3, width 1.0 (7.68 M supernet parameters), ImageNet input 128-224 px."""
    return _ofa_space("ofa_mbv3_d234_e346_k357_w1.0", 1.0)


@register_space("ofa_mbv3_d234_e346_k357_w1.2")
def ofa_mbv3_w12() -> SearchSpace:
    """OFA-MobileNetV3, width 1.2 (10.7 M supernet parameters), ImageNet input 128-224 px."""
    return _ofa_space("ofa_mbv3_d234_e346_k357_w1.2", 1.2)


def small_input_backbone(widths: tuple[int, ...] = SMALL_INPUT_WIDTHS) -> MBV3Backbone:
    """The skeleton of the small-input presets: OFA's stages, fewer down-samplings (1 channel, 10 classes).

    Args:
        widths: stem, block 0, the five stages, final expand and feature mix (`SMALL_INPUT_WIDTHS`).
    """
    return MBV3Backbone(
        stem_width=widths[0],
        stem_stride=2,
        block0_width=widths[1],
        stage_widths=widths[2:7],
        stage_strides=(1, 2, 2, 1, 2),
        stage_acts=STAGE_ACTS,
        stage_se=STAGE_SE,
        final_expand_width=widths[7],
        feature_mix_width=widths[8],
        kernel_sizes=KERNEL_SIZES,
        expand_ratios=EXPAND_RATIOS,
        depths=DEPTHS,
        in_channels=1,
        num_classes=10,
    )


def _small_input_space(name: str, backbone: MBV3Backbone, resolutions: tuple[int, ...]) -> SearchSpace:
    return SearchSpace(
        name=name,
        backbone=backbone,
        kernel_sizes=KERNEL_SIZES,
        expand_ratios=EXPAND_RATIOS,
        depths=DEPTHS,
        resolutions=resolutions,
    )


@register_space("ofa_mbv3_d234_e346_k357_32px")
def ofa_mbv3_32px() -> SearchSpace:
    """OFA-MobileNetV3 for 24-32 px images: same elastic dimensions, narrower, fewer down-samplings.

    Feature maps at 32 px: 16 (stem, block 0, stage 1), 8, 4, 4, 2. Sized so that one epoch of
    sandwich-rule training on 60,000 28 px images takes under 5 minutes on 2 CPU cores
    (``bench/supernet.py``).

    Defaults to 1 input channel and 10 classes (Fashion-MNIST); pass ``in_channels`` and
    ``num_classes`` to `get_space` / `build_supernet` for other data.
    """
    return _small_input_space("ofa_mbv3_d234_e346_k357_32px", small_input_backbone(), (24, 28, 32))


@register_space(DEMO_SPACE)
def ofa_mbv3_demo() -> SearchSpace:
    """The quickstart's preset: the 32 px skeleton at a quarter to half its widths, input 12-24 px.

    For the bundled digits (8x8 scans stored at 28 px): on the 32 px preset every subnet reaches
    ~98% and a search has no trade-off to show. Narrow stages make depth and expansion matter, and
    down-sampling the input makes a subnet cheaper and less accurate (measured in NOTES.md, issue 20).
    """
    return _small_input_space(DEMO_SPACE, small_input_backbone(DEMO_WIDTHS), DEMO_RESOLUTIONS)
