"""Analytic MACs and parameter counts against OFA's published figures and against the built subnets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nas import cost
from nas.space import SearchSpace
from nas.spaces import get_space, list_spaces
from nas.supernet import OFAMobileNetV3, build_supernet

W10 = "ofa_mbv3_d234_e346_k357_w1.0"
W12 = "ofa_mbv3_d234_e346_k357_w1.2"
PX32 = "ofa_mbv3_d234_e346_k357_32px"

MIXED = {"ks": [3, 5, 7, 3] * 5, "e": [6, 4, 3, 6] * 5, "d": [2, 3, 4, 3, 2]}

# OFA's Mbv3FLOPsModel, in M MACs (spec §9 and §12): {preset: {resolution: (max subnet, min subnet)}}
REFERENCE_MMACS = {
    W10: {
        128: (188.248320, 41.476224),
        160: (291.318048, 63.240528),
        176: (359.243472, 78.054120),
        192: (417.292160, 89.841344),
        208: (498.026544, 107.441496),
        224: (566.170656, 121.278672),
    },
    W12: {
        128: (279.987456, 65.536896),
        160: (433.563888, 100.320888),
        176: (534.157296, 123.656520),
        192: (621.268416, 142.834656),
        208: (740.840160, 170.564736),
        224: (843.101040, 193.078200),
    },
}
REFERENCE_PARAMS = {W10: (7_664_760, 3_410_792), W12: (10_701_632, 4_602_456)}


@pytest.mark.parametrize("name", [W10, W12])
@pytest.mark.parametrize("resolution", [128, 160, 176, 192, 208, 224])
def test_reference_macs_of_max_and_min(name: str, resolution: int) -> None:
    space = get_space(name)
    expected_max, expected_min = REFERENCE_MMACS[name][resolution]
    assert cost.macs(space, space.max_arch(resolution)) / 1e6 == pytest.approx(expected_max, abs=1e-6)
    assert cost.macs(space, space.min_arch(resolution)) / 1e6 == pytest.approx(expected_min, abs=1e-6)


@pytest.mark.parametrize("name", [W10, W12])
def test_reference_params_of_max_and_min(name: str) -> None:
    space = get_space(name)
    expected_max, expected_min = REFERENCE_PARAMS[name]
    assert cost.params(space, space.max_arch()) == expected_max
    assert cost.params(space, space.min_arch()) == expected_min
    # the parameter count does not depend on the resolution
    assert cost.params(space, space.max_arch(128)) == expected_max
    net = build_supernet(space)
    assert sum(p.numel() for p in net.extract(space.max_arch()).parameters()) == expected_max
    assert sum(p.numel() for p in net.extract(space.min_arch()).parameters()) == expected_min


@pytest.mark.parametrize(
    ("name", "resolution", "mmacs", "n_params"),
    [(W10, 224, 253.001824, 4_412_800), (W12, 192, 289.479872, 6_057_120)],
)
def test_reference_mixed_arch(name: str, resolution: int, mmacs: float, n_params: int) -> None:
    space = get_space(name)
    arch = {**MIXED, "r": resolution}
    assert cost.macs(space, arch) / 1e6 == pytest.approx(mmacs, abs=1e-6)
    assert cost.params(space, arch) == n_params
    # the same in a restricted space: costs depend on the subnet only
    small = get_space(name, resolutions=[resolution])
    assert cost.macs(small, arch) == cost.macs(space, arch)
    assert cost.params(small, arch) == n_params


# ---------------------------------------------------------------------------------------- vs. the built subnets


def small_space(name: str) -> SearchSpace:
    """Two resolutions of a preset: its smallest and largest for the small-input ones, two ImageNet ones else."""
    resolutions = get_space(name).resolutions
    return get_space(name, resolutions=[128, 176] if resolutions[-1] >= 176 else [resolutions[0], resolutions[-1]])


def sample_archs(space: SearchSpace, seed: int) -> list[dict[str, Any]]:
    return [*space.sample(np.random.default_rng(seed), 10), space.min_arch(), space.max_arch()]  # type: ignore[list-item]


@pytest.fixture(scope="module", params=list_spaces())
def net(request: pytest.FixtureRequest) -> OFAMobileNetV3:
    torch.manual_seed(0)
    return build_supernet(small_space(request.param)).eval()


def test_macs_and_params_match_the_extracted_subnets(net: OFAMobileNetV3) -> None:
    space = net.space
    c = space.backbone.in_channels
    for arch in sample_archs(space, seed=0):
        subnet = net.extract(arch)
        assert cost.macs(space, arch) * 2 == cost.count_macs(subnet, (2, c, arch["r"], arch["r"])), arch
        assert cost.params(space, arch) == sum(p.numel() for p in subnet.parameters()), arch


@pytest.mark.parametrize("name", list_spaces())
def test_costs_do_not_depend_on_restrictions(name: str) -> None:
    """Cost tables are indexed by choice position; a restricted space must give the same numbers."""
    full = get_space(name)
    small = get_space(name, kernel_sizes=[5, 7], expand_ratios=[4, 6], depths=[3, 4], resolutions=[full.resolutions[1]])
    archs = small.sample(np.random.default_rng(4), 100)
    assert cost.macs(small, archs).tolist() == cost.macs(full, archs).tolist()
    assert cost.params(small, archs).tolist() == cost.params(full, archs).tolist()


def test_costs_follow_input_channels_and_classes() -> None:
    space = get_space(PX32, in_channels=3, num_classes=100, resolutions=[32])
    default = get_space(PX32, resolutions=[32])
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    for arch in [space.max_arch(), *space.sample(np.random.default_rng(0), 3)]:
        subnet = net.extract(arch)
        assert cost.params(space, arch) == sum(p.numel() for p in subnet.parameters())
        assert cost.macs(space, arch) == cost.count_macs(subnet, (1, 3, 32, 32))
        # 2 more input channels (16 * 9 weights each, at 16x16) and 90 more classes (512 weights + 1 bias each)
        assert cost.params(space, arch) - cost.params(default, arch) == 2 * 16 * 9 + 90 * 513
        assert cost.macs(space, arch) - cost.macs(default, arch) == 2 * 16 * 9 * 16 * 16 + 90 * 512


def test_count_macs_without_squeeze_excite() -> None:
    """count_macs itself on plain Conv2d/Linear modules: per batch, convention of spec §9."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),  # 3*8*9 * 8*8
        nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False),  # 8*25 * 8*8
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),  # 80
    )
    model.train()
    expected = 3 * 8 * 9 * 64 + 8 * 25 * 64 + 80
    assert cost.count_macs(model, (1, 3, 16, 16)) == expected
    assert cost.count_macs(model, (4, 3, 16, 16)) == 4 * expected
    assert model.training  # mode restored
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_list_input_returns_int64_arrays(net: OFAMobileNetV3) -> None:
    space = net.space
    archs = sample_archs(space, seed=2)
    macs = cost.macs(space, archs)
    params = cost.params(space, archs)
    for values in (macs, params):
        assert isinstance(values, np.ndarray)
        assert values.dtype == np.int64
        assert values.shape == (len(archs),)
    assert macs.tolist() == [cost.macs(space, a) for a in archs]
    assert params.tolist() == [cost.params(space, a) for a in archs]
    single = cost.macs(space, archs[0])
    assert isinstance(single, int) and not isinstance(single, bool)
    assert isinstance(cost.params(space, archs[0]), int)
    assert cost.macs(space, []).shape == (0,)
    with pytest.raises(ValueError, match="'ks'"):
        cost.macs(space, [archs[0], {**archs[1], "ks": [4] * space.n_blocks}])


@pytest.mark.parametrize("name", list_spaces())
def test_macs_are_monotone(name: str) -> None:
    space = get_space(name)
    archs = space.sample(np.random.default_rng(3), 500)
    macs = cost.macs(space, archs)
    params = cost.params(space, archs)
    max_params, min_params = cost.params(space, space.max_arch()), cost.params(space, space.min_arch())
    for arch, m, p in zip(archs, macs, params, strict=True):
        r = arch["r"]
        assert cost.macs(space, space.min_arch(r)) <= m <= cost.macs(space, space.max_arch(r))
        assert min_params <= p <= max_params
    # more resolution, kernel, expansion or depth never costs less
    per_r = [cost.macs(space, space.max_arch(r)) for r in space.resolutions]
    assert per_r == sorted(per_r) and len(set(per_r)) > 1
    for arch in archs[:50]:
        for field, bigger in (("ks", max(space.kernel_sizes)), ("e", max(space.expand_ratios))):
            grown = {**arch, field: [bigger] * space.n_blocks}
            assert cost.macs(space, grown) >= cost.macs(space, arch)
        deeper = {**arch, "d": [max(space.depths)] * space.n_stages}
        assert cost.macs(space, deeper) >= cost.macs(space, arch)
        assert cost.params(space, deeper) >= cost.params(space, arch)
