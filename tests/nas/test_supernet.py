"""The OFA-MobileNetV3 supernet: OFA reference outputs, keys, extraction, checkpoints, channel sorting, BN."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas.space import SearchSpace
from nas.spaces import get_space, list_spaces
from nas.supernet import OFAMobileNetV3, build_subnet, build_supernet, read_state_dict
from nas.supernet.dynamic import DynamicBatchNorm2d, DynamicDepthwiseConv, DynamicMBConv, DynamicPointConv

W10 = "ofa_mbv3_d234_e346_k357_w1.0"
W12 = "ofa_mbv3_d234_e346_k357_w1.2"
PX32 = "ofa_mbv3_d234_e346_k357_32px"
TOL = 1e-5

MIXED = {"ks": [3, 5, 7, 3] * 5, "e": [6, 4, 3, 6] * 5, "d": [2, 3, 4, 3, 2]}


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


def state_copy(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_state_equal(net: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    actual = net.state_dict()
    assert list(actual) == list(expected)
    for key, value in actual.items():
        assert torch.equal(value, expected[key]), key


def dynamic_forward(net: OFAMobileNetV3, arch: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
    net.set_active(arch)
    with torch.no_grad():
        return net(x)


def extracted_forward(net: OFAMobileNetV3, arch: Mapping[str, Any], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.extract(arch)(x)


@pytest.fixture(scope="module")
def ref_net(ref_state_dict: dict[str, torch.Tensor]) -> OFAMobileNetV3:
    """The w1.0 supernet with the reference weights, eval mode (read-only: tests must not modify it)."""
    net = build_supernet(W10)
    net.load_state_dict(ref_state_dict)
    return net.eval()


def fresh_ref_net(state_dict: dict[str, torch.Tensor]) -> OFAMobileNetV3:
    net = build_supernet(W10)
    net.load_state_dict(state_dict)
    return net.eval()


# ---------------------------------------------------------------------------------------- (a) reference


def test_reference_has_five_cases(ref_cases: list[dict[str, Any]]) -> None:
    assert len(ref_cases) == 5


@pytest.mark.parametrize("index", range(5))
def test_reference_logits(ref_net: OFAMobileNetV3, ref_cases: list[dict[str, Any]], index: int) -> None:
    case = ref_cases[index]
    arch = ref_net.space.from_ofa(case["arch"])
    assert arch["r"] == case["arch"]["image_size"] == case["input"].shape[-1]
    expected = case["logits_supernet"]
    dynamic = dynamic_forward(ref_net, arch, case["input"])
    extracted = extracted_forward(ref_net, arch, case["input"])
    assert dynamic.shape == expected.shape == (2, 1000)
    assert max_abs_diff(dynamic, expected) <= TOL
    assert max_abs_diff(extracted, expected) <= TOL
    assert max_abs_diff(extracted, case["logits_subnet"]) <= TOL


@pytest.mark.parametrize("index", range(5))
def test_reference_subnet_config_and_shapes(
    ref_net: OFAMobileNetV3, ref_cases: list[dict[str, Any]], index: int
) -> None:
    case = ref_cases[index]
    subnet = ref_net.extract(ref_net.space.from_ofa(case["arch"]))
    assert subnet.net_config() == case["subnet_config"]
    shapes = {k: list(v.shape) for k, v in subnet.state_dict().items()}
    assert shapes == case["subnet_state_dict_shapes"]
    assert list(shapes) == list(case["subnet_state_dict_shapes"])  # same order too


def test_reference_mixed_subnet_shapes(ref_net: OFAMobileNetV3) -> None:
    """Spec §12.1: the mixed w1.0 subnet."""
    subnet = ref_net.extract({**MIXED, "r": 224})
    sd = subnet.state_dict()
    assert len(subnet.blocks) == 1 + sum(MIXED["d"]) == 15
    assert len(sd) == 311
    assert sum(p.numel() for p in subnet.parameters()) == 4_412_800
    assert list(sd["blocks.3.conv.depth_conv.conv.weight"].shape) == [144, 1, 3, 3]
    assert list(sd["blocks.3.conv.depth_conv.se.fc.reduce.weight"].shape) == [40, 144, 1, 1]
    assert list(sd["blocks.4.conv.depth_conv.conv.weight"].shape) == [160, 1, 5, 5]
    assert list(sd["blocks.4.conv.depth_conv.se.fc.reduce.weight"].shape) == [40, 160, 1, 1]
    assert not any(k.endswith("_matrix") or ".bn.bn." in k or ".conv.conv." in k for k in sd)


def test_kernel_transform_chains_through_the_bigger_kernels(ref_net: OFAMobileNetV3) -> None:
    """Spec §3/§12.2: k=3 = crop3(reshape(crop5(W) M75^T)) M53^T, k=5 = crop5(W) M75^T, k=7 = W."""
    block = ref_net.dynamic_blocks()[4]
    dw = block.depth_conv.conv
    assert isinstance(dw, DynamicDepthwiseConv)
    m = 120
    w = dw.conv.weight[:m].detach()
    m75 = dict(dw.named_parameters())["7to5_matrix"].detach()
    m53 = dict(dw.named_parameters())["5to3_matrix"].detach()
    assert not torch.equal(m75, torch.eye(25))  # the reference matrices are non-trivial
    k5 = (w[:, :, 1:6, 1:6].reshape(m, 25) @ m75.T).reshape(m, 1, 5, 5)
    k3 = (k5[:, :, 1:4, 1:4].reshape(m, 9) @ m53.T).reshape(m, 1, 3, 3)
    with torch.no_grad():
        assert torch.equal(dw.active_filter(m, 7), w)
        assert max_abs_diff(dw.active_filter(m, 5), k5) <= 1e-6
        assert max_abs_diff(dw.active_filter(m, 3), k3) <= 1e-6
        wrong = (w[:, :, 2:5, 2:5].reshape(m, 9) @ m53.T).reshape(m, 1, 3, 3)
        assert max_abs_diff(dw.active_filter(m, 3), wrong) > 1e-2
    # identity matrices give plain centre crops
    plain = DynamicDepthwiseConv(16, (3, 5, 7))
    with torch.no_grad():
        full = plain.conv.weight
        assert torch.equal(plain.active_filter(16, 5), full[:, :, 1:6, 1:6])
        assert torch.equal(plain.active_filter(8, 3), full[:8, :, 2:5, 2:5])


# ---------------------------------------------------------------------------------------- (b) keys


def test_state_dict_keys_and_shapes_match_ofa(ref_shapes: dict[str, list[int]]) -> None:
    net = build_supernet(W10)
    shapes = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    assert shapes == list(ref_shapes.items())
    assert len(shapes) == 475
    assert sum(p.numel() for p in net.parameters()) == 7_678_880
    # Spec §9: supernet minus max subnet = the kernel-transform matrices, 20 * (625 + 81)
    assert sum(p.numel() for p in net.extract(net.space.max_arch()).parameters()) == 7_678_880 - 14_120


def test_w12_state_dict_size() -> None:
    net = build_supernet(W12)
    sd = net.state_dict()
    assert len(sd) == 475
    assert sum(p.numel() for p in net.parameters()) == 10_715_752
    assert list(sd["first_conv.conv.weight"].shape) == [24, 3, 3, 3]
    assert list(sd["classifier.linear.weight"].shape) == [1000, 1536]
    assert list(sd["blocks.20.conv.depth_conv.se.fc.reduce.weight"].shape) == [288, 1152, 1, 1]
    w10_keys = list(build_supernet(W10).state_dict())
    assert list(sd) == w10_keys


# ---------------------------------------------------------------------------------------- (c) extraction


def randomise(net: OFAMobileNetV3, seed: int) -> None:
    """Non-trivial BN statistics/affine parameters and kernel-transform matrices."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, DynamicBatchNorm2d):
                bn = module.bn
                n = bn.num_features
                assert bn.running_mean is not None and bn.running_var is not None
                bn.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                bn.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                bn.weight.copy_(1.0 + 0.3 * torch.randn(n, generator=gen))
                bn.bias.copy_(0.2 * torch.randn(n, generator=gen))
        n_matrices = 0
        for name, param in net.named_parameters():
            if name.endswith("_matrix"):
                param.copy_(torch.eye(param.shape[0]) + 0.1 * torch.randn(param.shape, generator=gen))
                n_matrices += 1
    assert n_matrices == 2 * net.space.n_blocks


def small_space(name: str) -> SearchSpace:
    """A preset as it is when its inputs are small, else with two ImageNet resolutions."""
    return get_space(name) if get_space(name).resolutions[-1] <= 32 else get_space(name, resolutions=[128, 160])


@pytest.mark.parametrize("name", list_spaces())
def test_extract_equals_dynamic_forward(name: str) -> None:
    space = small_space(name)
    torch.manual_seed(0)
    net = build_supernet(space)
    assert net.space == space
    randomise(net, seed=1)
    net.eval()
    archs = [*space.sample(np.random.default_rng(0), 20), space.min_arch(), space.max_arch()]
    gen = torch.Generator().manual_seed(2)
    outputs = []
    for arch in archs:
        x = torch.randn(2, space.backbone.in_channels, arch["r"], arch["r"], generator=gen)
        dynamic = dynamic_forward(net, arch, x)
        extracted = extracted_forward(net, arch, x)
        assert dynamic.shape == (2, space.backbone.num_classes)
        assert torch.isfinite(dynamic).all()
        assert max_abs_diff(dynamic, extracted) <= TOL, arch
        outputs.append(dynamic)
    # the check is not trivial: the subnets compute different functions
    x = torch.randn(2, space.backbone.in_channels, space.resolutions[0], space.resolutions[0], generator=gen)
    lo, hi = dynamic_forward(net, space.min_arch(), x), dynamic_forward(net, space.max_arch(space.resolutions[0]), x)
    assert max_abs_diff(lo, hi) > 1e-3


@pytest.mark.parametrize("channels_last", [False, True])
def test_folding_batch_norms_keeps_the_outputs(channels_last: bool) -> None:
    space = get_space(PX32)
    torch.manual_seed(0)
    net = build_supernet(space)
    randomise(net, seed=3)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(4)).contiguous(memory_format=fmt)
    for arch in [space.max_arch(), *space.sample(np.random.default_rng(5), 3)]:
        subnet = net.extract(arch).eval()
        subnet.to(memory_format=fmt)  # type: ignore[call-overload]  # torch's stubs omit memory_format
        with torch.no_grad():
            before = subnet(x)
            folded = subnet.fold_batch_norms()
            after = folded(x)
        assert folded is subnet and not any(isinstance(m, torch.nn.BatchNorm2d) for m in subnet.modules())
        assert max_abs_diff(before, after) <= 1e-4, arch
        assert max_abs_diff(before, torch.zeros_like(before)) > 1e-2
        assert subnet.first_conv.conv.weight.is_contiguous(memory_format=fmt)


def test_extract_matches_in_train_mode(ref_state_dict: dict[str, torch.Tensor]) -> None:
    """With batch statistics too, the static subnet computes what the dynamic one does."""
    net = fresh_ref_net(ref_state_dict).train()
    arch = net.space.canonical({**MIXED, "r": 160})
    subnet = net.extract(arch)
    assert subnet.training
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_abs_diff(dynamic_forward(net, arch, x), subnet(x)) <= TOL


def test_32px_preset_with_other_io() -> None:
    net = build_supernet(PX32, in_channels=3, num_classes=100).eval()
    assert (net.backbone.in_channels, net.backbone.num_classes) == (3, 100)
    arch = net.space.sample(np.random.default_rng(0))
    x = torch.randn(2, 3, arch["r"], arch["r"])
    dynamic = dynamic_forward(net, arch, x)
    assert dynamic.shape == (2, 100)
    assert max_abs_diff(dynamic, extracted_forward(net, arch, x)) <= TOL
    default = build_supernet(PX32)
    assert default.state_dict()["first_conv.conv.weight"].shape[1] == 1
    assert default.state_dict()["classifier.linear.weight"].shape[0] == 10


# ---------------------------------------------------------------------------------------- (d) legacy keys


def test_legacy_checkpoint_loads(
    tmp_path: Path, ref_state_dict: dict[str, torch.Tensor], ref_cases: list[dict[str, Any]], ref_net: OFAMobileNetV3
) -> None:
    legacy = {re.sub(r"^blocks\.([1-9]\d*)\.conv\.", r"blocks.\1.mobile_inverted_conv.", k): v
              for k, v in ref_state_dict.items()}  # fmt: skip
    renamed = [k for k in legacy if ".mobile_inverted_conv." in k]
    assert len(renamed) == 20 * 20 + 12 * 4  # every key of blocks 1-20 (12 have SE: 4 more keys each)
    assert not any(k.startswith("blocks.0.mobile") for k in legacy)
    path = tmp_path / "ofa_mbv3_w1.0.pth"
    torch.save({"state_dict": legacy}, path)
    loaded = read_state_dict(path)
    assert list(loaded) == list(legacy)
    net = build_supernet(W10)
    net.load_state_dict(loaded)
    net.eval()
    assert_state_equal(net, ref_net.state_dict())
    case = ref_cases[2]
    arch = net.space.from_ofa(case["arch"])
    assert torch.equal(dynamic_forward(net, arch, case["input"]), dynamic_forward(ref_net, arch, case["input"]))


@pytest.mark.parametrize(
    "renames",
    [
        [(".bn.bn.", ".bn.")],
        [(".conv.conv.weight", ".conv.weight")],
        [(".bn.bn.", ".bn."), (".conv.conv.weight", ".conv.weight"), (".conv.", ".mobile_inverted_conv.")],
    ],
    ids=["bn", "conv", "all-and-legacy"],
)
def test_collapsed_segments_load(
    ref_state_dict: dict[str, torch.Tensor], ref_net: OFAMobileNetV3, renames: list[tuple[str, str]]
) -> None:
    collapsed = {}
    for key, value in ref_state_dict.items():
        for old, new in renames:
            if old == ".conv.":  # legacy module name, only the first occurrence (blocks.i.conv.)
                key = re.sub(r"^(blocks\.\d+)\.conv\.", r"\1.mobile_inverted_conv.", key)
            else:
                key = key.replace(old, new)
        collapsed[key] = value
    assert set(collapsed) != set(ref_state_dict)
    net = build_supernet(W10)
    net.load_state_dict(collapsed)
    assert_state_equal(net, ref_net.state_dict())


def test_read_state_dict_formats(tmp_path: Path, ref_state_dict: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    plain = tmp_path / "plain.pt"
    torch.save(ref_state_dict, plain)
    assert list(read_state_dict(plain)) == list(ref_state_dict)
    st = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in ref_state_dict.items()}, str(st))
    loaded = read_state_dict(st)
    assert set(loaded) == set(ref_state_dict)
    assert all(torch.equal(loaded[k], v) for k, v in ref_state_dict.items())
    junk = tmp_path / "junk.pt"
    torch.save({"epoch": 3, "state_dict": [1, 2, 3]}, junk)
    with pytest.raises(ValueError, match="state_dict"):
        read_state_dict(junk)


# ---------------------------------------------------------------------------------------- (e) bad checkpoints


def test_loading_w12_into_w10_fails_and_changes_nothing() -> None:
    net = build_supernet(W10)
    before = state_copy(net)
    other = build_supernet(W12).state_dict()
    with pytest.raises(ValueError) as info:
        net.load_state_dict(other)
    message = str(info.value)
    assert "first_conv.conv.weight" in message
    assert "[24, 3, 3, 3]" in message and "[16, 3, 3, 3]" in message
    assert_state_equal(net, before)


def test_unknown_key_fails(ref_state_dict: dict[str, torch.Tensor]) -> None:
    net = build_supernet(W10)
    before = state_copy(net)
    extra = {**ref_state_dict, "blocks.21.conv.point_linear.conv.conv.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=re.escape("blocks.21.conv.point_linear.conv.conv.weight")):
        net.load_state_dict(extra)
    assert_state_equal(net, before)


def test_missing_conv_weight_fails(ref_state_dict: dict[str, torch.Tensor]) -> None:
    net = build_supernet(W10)
    before = state_copy(net)
    missing = {k: v for k, v in ref_state_dict.items() if k != "blocks.7.conv.depth_conv.conv.conv.weight"}
    with pytest.raises(ValueError, match=r"missing.*blocks\.7\.conv\.depth_conv\.conv\.conv\.weight"):
        net.load_state_dict(missing)
    assert_state_equal(net, before)
    # strict=False keeps the current value of a missing key
    net.load_state_dict(missing, strict=False)
    sd = net.state_dict()
    key7, key8 = "blocks.7.conv.depth_conv.conv.conv.weight", "blocks.8.conv.depth_conv.conv.conv.weight"
    assert torch.equal(sd[key7], before[key7])
    assert torch.equal(sd[key8], ref_state_dict[key8])


def test_missing_matrices_load_as_identity(ref_state_dict: dict[str, torch.Tensor]) -> None:
    without = {k: v for k, v in ref_state_dict.items() if not k.endswith("_matrix")}
    assert len(without) == 475 - 40
    net = build_supernet(W10)
    net.load_state_dict(without)
    sd = net.state_dict()
    for key, value in sd.items():
        if key.endswith("_matrix"):
            assert torch.equal(value, torch.eye(value.shape[0])), key
        else:
            assert torch.equal(value, ref_state_dict[key]), key


# ---------------------------------------------------------------------------------------- (f) channel sorting


@pytest.mark.parametrize("expand_stage", [0, 1, 2])
def test_sort_channels_keeps_the_max_subnet(ref_state_dict: dict[str, torch.Tensor], expand_stage: int) -> None:
    net = fresh_ref_net(ref_state_dict)
    # mark each expanded channel (inverted-bottleneck BN running mean = its index) to follow the permutation;
    # the max subnet's output is computed after marking, so the marker is part of the function
    with torch.no_grad():
        for block in net.dynamic_blocks():
            rm = block.inverted_bottleneck.bn.bn.running_mean
            assert rm is not None
            rm.copy_(torch.arange(block.spec.max_mid, dtype=rm.dtype) * 1e-3)
    arch = net.space.max_arch(128)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    before_out = dynamic_forward(net, arch, x)
    before = state_copy(net)
    net.sort_channels(expand_stage)
    after_out = dynamic_forward(net, arch, x)
    assert max_abs_diff(before_out, after_out) <= TOL
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.endswith("point_linear.conv.conv.weight") for k in changed)
    assert not any(k.endswith("_matrix") for k in changed)  # the kernel matrices are not touched
    for block in net.dynamic_blocks():
        rm = block.inverted_bottleneck.bn.bn.running_mean
        assert rm is not None
        order = torch.round(rm * 1e3).long().tolist()
        assert sorted(order) == list(range(block.spec.max_mid))  # a permutation
        pl = block.point_linear.conv
        assert isinstance(pl, DynamicPointConv)
        importance = pl.conv.weight.abs().sum(dim=(0, 2, 3))
        w3, w4, w6 = (block.spec.mid_channels(e) for e in (3, 4, 6))
        if expand_stage == 0:
            assert bool((importance[1:] <= importance[:-1]).all())
        if expand_stage >= 1:  # channels inside the width-4 prefix stay inside it
            assert sorted(order[:w4]) == list(range(w4))
            assert sorted(order[w4:w6]) == list(range(w4, w6))
        if expand_stage >= 2:
            assert sorted(order[:w3]) == list(range(w3))
        # each nested group is sorted by importance; OFA adds offsets of -1e5/-2e5 in float32 to the
        # later groups, so there the order is only exact up to the float32 spacing at 2e5 (1/64)
        groups = [(0, w6)] if expand_stage == 0 else [(0, w4), (w4, w6)] if expand_stage == 1 else [
            (0, w3), (w3, w4), (w4, w6)]  # fmt: skip
        for i, (lo, hi) in enumerate(groups):
            part = importance[lo:hi]
            slack = 0.0 if i == 0 else 2.0**-5
            assert bool((part[1:] <= part[:-1] + slack).all())
        se = block.depth_conv.se
        if se is not None:
            se_importance = se.fc.expand.weight.abs().sum(dim=(0, 2, 3))
            assert bool((se_importance[1:] <= se_importance[:-1]).all())


# ---------------------------------------------------------------------------------------- (g) set_active / extract


def test_set_active_rejects_bad_arch(ref_net: OFAMobileNetV3) -> None:
    good = ref_net.set_active({**MIXED, "r": 160})
    assert ref_net.active_arch == good
    for bad, field in (
        ({**MIXED, "r": 130}, "'r'"),
        ({**MIXED, "ks": [4] * 20, "r": 160}, "'ks'"),
        ({**MIXED, "d": [5] * 5, "r": 160}, "'d'"),
        ({"ks": MIXED["ks"], "e": MIXED["e"], "d": MIXED["d"]}, "missing"),
    ):
        with pytest.raises(ValueError, match=field):
            ref_net.set_active(bad)
        assert ref_net.active_arch == good  # unchanged
    assert [b.active_kernel for b in ref_net.dynamic_blocks()] == good["ks"]
    assert ref_net.active_depths == good["d"]
    with pytest.raises(ValueError, match="'e'"):
        ref_net.extract({**MIXED, "e": [5] * 20, "r": 160})


def test_extract_returns_independent_tensors(ref_state_dict: dict[str, torch.Tensor]) -> None:
    net = fresh_ref_net(ref_state_dict)
    net.set_active({**MIXED, "r": 160})
    subnet = net.extract()  # the active subnet
    assert not subnet.training
    assert subnet.net_config() == net.extract({**MIXED, "r": 160}).net_config()
    before = state_copy(net)
    with torch.no_grad():
        for p in subnet.parameters():
            p.add_(1.0)
        for b in subnet.buffers():
            b.add_(1)
    assert_state_equal(net, before)
    supernet_ptrs = {t.data_ptr() for t in net.state_dict().values()}
    assert not any(t.data_ptr() in supernet_ptrs for t in subnet.state_dict().values())
    # and the other way round
    fresh = net.extract({**MIXED, "r": 160})
    fresh_state = state_copy(fresh)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    assert_state_equal(fresh, fresh_state)
    assert net.train().extract(net.space.min_arch()).training


# ---------------------------------------------------------------------------------------- (h) train-mode BN


def test_train_mode_dynamic_bn_updates_only_the_active_prefix(ref_state_dict: dict[str, torch.Tensor]) -> None:
    net = fresh_ref_net(ref_state_dict).train()
    arch = net.set_active(net.space.min_arch(128))  # expand ratio 3 everywhere
    block = net.dynamic_blocks()[4]  # supernet block 5: max_mid 144, active 72
    assert isinstance(block, DynamicMBConv)
    c = block.spec.mid_channels(arch["e"][block.spec.index])
    bn = block.depth_conv.bn.bn
    assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
    assert (c, bn.num_features) == (72, 144)
    old_mean, old_var = bn.running_mean.clone(), bn.running_var.clone()
    old_count = int(bn.num_batches_tracked)
    seen: list[torch.Tensor] = []
    handle = block.depth_conv.bn.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            out = net(torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    finally:
        handle.remove()
    assert out.shape == (2, 1000)
    (x,) = seen
    assert x.shape[1] == c
    assert torch.equal(bn.running_mean[c:], old_mean[c:])
    assert torch.equal(bn.running_var[c:], old_var[c:])
    assert bool((bn.running_mean[:c] != old_mean[:c]).all())
    # spec §5: momentum 0.1, unbiased variance for the running estimate
    expected_mean = 0.9 * old_mean[:c] + 0.1 * x.mean(dim=(0, 2, 3))
    expected_var = 0.9 * old_var[:c] + 0.1 * x.var(dim=(0, 2, 3), unbiased=True)
    assert max_abs_diff(bn.running_mean[:c], expected_mean) <= 1e-5
    assert max_abs_diff(bn.running_var[:c], expected_var) <= 1e-4 * float(expected_var.abs().max())
    assert int(bn.num_batches_tracked) == old_count + 1
    # normalisation used the batch statistics with the biased variance
    y = F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], True, 0.1, bn.eps)
    assert max_abs_diff(block.depth_conv.bn(x), y) <= 1e-5


def test_gradients_reach_only_the_active_weights(ref_state_dict: dict[str, torch.Tensor]) -> None:
    net = fresh_ref_net(ref_state_dict).train()
    ks = [3] * 20
    ks[1] = 7  # supernet block 2 runs at the full kernel
    arch = net.set_active({"ks": ks, "e": [3] * 20, "d": [2] * 5, "r": 128})
    net.zero_grad()
    net(torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))).square().mean().backward()
    blocks = net.dynamic_blocks()
    grads = {name: p.grad for name, p in net.named_parameters()}
    # block 1 (slot 0): expand 3 -> only the first mid(3) rows of the expansion conv get gradients
    c = blocks[0].spec.mid_channels(3)
    ib = grads["blocks.1.conv.inverted_bottleneck.conv.conv.weight"]
    assert ib is not None and bool((ib[:c] != 0).any()) and bool((ib[c:] == 0).all())
    bn = grads["blocks.1.conv.depth_conv.bn.bn.weight"]
    assert bn is not None and bool((bn[c:] == 0).all()) and bool((bn[:c] != 0).all())
    # kernel 3 trains both transform matrices, kernel 7 neither
    for name in ("5to3_matrix", "7to5_matrix"):
        g = grads[f"blocks.1.conv.depth_conv.conv.{name}"]
        assert g is not None and bool((g != 0).any())
        g7 = grads[f"blocks.2.conv.depth_conv.conv.{name}"]
        assert g7 is None or bool((g7 == 0).all())
    # skipped blocks (positions 2 and 3 of every stage) get no gradient at all
    skipped = [b.spec.index + 1 for b in blocks if b.spec.position >= arch["d"][b.spec.stage]]
    assert len(skipped) == 10
    for i in skipped:
        for name, g in grads.items():
            if name.startswith(f"blocks.{i}."):
                assert g is None or bool((g == 0).all()), name


def test_load_converts_dtypes(ref_state_dict: dict[str, torch.Tensor], ref_net: OFAMobileNetV3) -> None:
    doubled = {k: v.double() if v.is_floating_point() else v for k, v in ref_state_dict.items()}
    net = build_supernet(W10)
    net.load_state_dict(doubled)
    assert all(v.dtype in (torch.float32, torch.int64) for v in net.state_dict().values())
    assert_state_equal(net, ref_net.state_dict())


def test_eval_mode_forward_leaves_bn_statistics_alone(ref_net: OFAMobileNetV3) -> None:
    before = copy.deepcopy(ref_net.state_dict())
    dynamic_forward(ref_net, ref_net.space.min_arch(128), torch.randn(2, 3, 128, 128))
    assert_state_equal(ref_net, before)


def test_static_subnet_loads_legacy_key_names() -> None:
    net = build_supernet(PX32)
    arch = net.space.sample(5)
    sub = net.extract(arch)
    legacy = {k.replace("blocks.1.conv.", "blocks.1.mobile_inverted_conv."): v for k, v in sub.state_dict().items()}
    assert any("mobile_inverted_conv" in k for k in legacy)
    fresh = build_subnet(net.backbone, arch)
    fresh.load_state_dict(legacy)
    for key, value in sub.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_shape_mismatch_is_reported_once_per_key() -> None:
    w10, w12 = build_supernet(W10), build_supernet(W12)
    with pytest.raises(ValueError, match=r"state_dict does not fit") as info:
        w10.load_state_dict(w12.state_dict())
    message = str(info.value)
    assert "missing key" not in message
    mismatched = sum(1 for k, v in w12.state_dict().items() if list(v.shape) != list(w10.state_dict()[k].shape))
    assert f"{mismatched} problem(s)" in message
