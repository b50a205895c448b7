"""SearchSpace: sampling, canonical forms, keys, encodings, genetic operators, validation, presets."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from nas.backbone import make_divisible, se_channels
from nas.space import SearchSpace
from nas.spaces import get_space, list_spaces

W10 = "ofa_mbv3_d234_e346_k357_w1.0"
W12 = "ofa_mbv3_d234_e346_k357_w1.2"
PX32 = "ofa_mbv3_d234_e346_k357_32px"
OFA_PRESETS = [W10, W12]
ALL_PRESETS = list_spaces()


@pytest.fixture(params=ALL_PRESETS)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return get_space(request.param)


def copy_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    return {"ks": list(arch["ks"]), "e": list(arch["e"]), "d": list(arch["d"]), "r": arch["r"]}


def active_slots(space: SearchSpace, d: list[int]) -> list[bool]:
    """Naive: slot j runs iff its position in its stage is below the stage's depth."""
    return [j % space.max_depth < d[j // space.max_depth] for j in range(space.n_blocks)]


def naive_identity(space: SearchSpace, arch: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two archs the same subnet: active genes, depths, resolution."""
    act = active_slots(space, arch["d"])
    ks = tuple(k if a else None for k, a in zip(arch["ks"], act, strict=True))
    es = tuple(e if a else None for e, a in zip(arch["e"], act, strict=True))
    return ks, es, tuple(arch["d"]), arch["r"]


def mixed_arch(space: SearchSpace, r: int | None = None) -> dict[str, Any]:
    """The spec's "mixed" arch (ks [3,5,7,3]*5, e [6,4,3,6]*5, d [2,3,4,3,2])."""
    return {
        "ks": [3, 5, 7, 3] * 5,
        "e": [6, 4, 3, 6] * 5,
        "d": [2, 3, 4, 3, 2],
        "r": space.resolutions[-1] if r is None else r,
    }


# ---------------------------------------------------------------------------------------- presets


def test_registry_has_the_three_presets() -> None:
    assert {W10, W12, PX32} <= set(ALL_PRESETS)
    assert sorted(ALL_PRESETS) == ALL_PRESETS


@pytest.mark.parametrize("name", OFA_PRESETS)
def test_ofa_presets_choices(name: str) -> None:
    space = get_space(name)
    assert space.name == name
    assert space.kernel_sizes == (3, 5, 7)
    assert space.expand_ratios == (3, 4, 6)
    assert space.depths == (2, 3, 4)
    assert space.resolutions == tuple(range(128, 225, 4))
    assert len(space.resolutions) == 25
    assert (space.n_blocks, space.n_stages, space.max_depth) == (20, 5, 4)
    assert (space.backbone.in_channels, space.backbone.num_classes) == (3, 1000)
    # Spec §6/§9: 25 resolutions x (9^2 + 9^3 + 9^4)^5 subnets.
    assert space.size == 25 * (9**2 + 9**3 + 9**4) ** 5
    assert space.encoding_size == 20 * 6 + 25


@pytest.mark.parametrize(
    ("name", "widths"),
    [
        (W10, (16, 16, (24, 40, 80, 112, 160), 960, 1280)),
        (W12, (24, 24, (32, 48, 96, 136, 192), 1152, 1536)),
    ],
)
def test_ofa_backbone_widths(name: str, widths: tuple[Any, ...]) -> None:
    """Spec §1/§2: widths, strides, activations and SE placement of OFA's supernets."""
    b = get_space(name).backbone
    assert (b.stem_width, b.block0_width, b.stage_widths, b.final_expand_width, b.feature_mix_width) == widths
    assert b.stage_strides == (2, 2, 2, 1, 2)
    assert b.stage_acts == ("relu", "relu", "h_swish", "h_swish", "h_swish")
    assert b.stage_se == (False, True, False, True, True)
    shortcut_blocks = [spec.index + 1 for spec in b.blocks if spec.has_shortcut]
    assert shortcut_blocks == [2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20]


def test_ofa_mid_and_se_widths() -> None:
    """Spec §1: per-block mids for e = 3/4/6 (w1.0 and w1.2) and SE hidden widths."""
    expected = {
        W10: {1: (48, 64, 96), 2: (72, 96, 144), 5: (72, 96, 144), 6: (120, 160, 240), 9: (120, 160, 240),
              10: (240, 320, 480), 13: (240, 320, 480), 14: (336, 448, 672), 17: (336, 448, 672),
              18: (480, 640, 960)},
        W12: {1: (72, 96, 144), 2: (96, 128, 192), 5: (96, 128, 192), 6: (144, 192, 288), 9: (144, 192, 288),
              10: (288, 384, 576), 13: (288, 384, 576), 14: (408, 544, 816), 17: (408, 544, 816),
              18: (576, 768, 1152)},
    }  # fmt: skip
    for name, table in expected.items():
        blocks = get_space(name).backbone.blocks
        for block, mids in table.items():
            spec = blocks[block - 1]
            assert tuple(spec.mid_channels(e) for e in (3, 4, 6)) == mids, (name, block)
            assert spec.max_mid == mids[-1]
    se = {72: 24, 96: 24, 120: 32, 128: 32, 144: 40, 160: 40, 192: 48, 240: 64, 288: 72, 320: 80, 336: 88,
          384: 96, 408: 104, 448: 112, 480: 120, 544: 136, 576: 144, 640: 160, 672: 168, 768: 192, 816: 208,
          960: 240, 1152: 288}  # fmt: skip
    assert {mid: se_channels(mid) for mid in se} == se


@pytest.mark.parametrize(
    ("value", "expected"),
    [(19.2, 24), (18, 24), (134.4, 136), (28.8, 32), (12, 16), (30, 32), (60, 64), (84, 88), (16, 16), (4, 8)],
)
def test_make_divisible(value: float, expected: int) -> None:
    assert make_divisible(value) == expected


def test_32px_preset_io() -> None:
    space = get_space(PX32)
    assert (space.backbone.in_channels, space.backbone.num_classes) == (1, 10)
    assert space.kernel_sizes == (3, 5, 7)
    assert space.expand_ratios == (3, 4, 6)
    assert space.depths == (2, 3, 4)
    assert max(space.resolutions) == 32
    other = get_space(PX32, in_channels=3, num_classes=100)
    assert (other.backbone.in_channels, other.backbone.num_classes) == (3, 100)
    # Only the I/O changes; the elastic dimensions and the rest of the skeleton stay.
    assert other.resolutions == space.resolutions
    assert other.backbone.blocks == space.backbone.blocks
    assert get_space(PX32) == space  # the preset itself is not modified


def test_unknown_preset_lists_registered_ones() -> None:
    with pytest.raises(KeyError) as info:
        get_space("ofa_mbv3_no_such_space")
    message = str(info.value)
    assert "ofa_mbv3_no_such_space" in message
    for name in ALL_PRESETS:
        assert name in message


# ---------------------------------------------------------------------------------------- sampling


def test_sampled_archs_validate_and_are_canonical(space: SearchSpace) -> None:
    archs = space.sample(np.random.default_rng(0), 200)
    assert isinstance(archs, list) and len(archs) == 200
    for arch in archs:
        space.validate(arch)
        assert space.canonical(arch) == arch
        assert set(arch) == {"ks", "e", "d", "r"}
        assert len(arch["ks"]) == len(arch["e"]) == space.n_blocks and len(arch["d"]) == space.n_stages
        # plain JSON-ready ints
        assert all(type(v) is int for v in [*arch["ks"], *arch["e"], *arch["d"], arch["r"]])
    # every choice of every dimension shows up in 200 draws
    assert {k for a in archs for k in a["ks"]} == set(space.kernel_sizes)
    assert {e for a in archs for e in a["e"]} == set(space.expand_ratios)
    assert {d for a in archs for d in a["d"]} == set(space.depths)
    assert {a["r"] for a in archs} == set(space.resolutions)


def test_sample_single_and_batch(space: SearchSpace) -> None:
    one = space.sample(np.random.default_rng(1))
    assert isinstance(one, dict)
    space.validate(one)
    many = space.sample(np.random.default_rng(1), 5)
    assert isinstance(many, list) and len(many) == 5
    assert all(isinstance(a, dict) for a in many)
    assert space.sample(7, 30) == space.sample(7, 30)  # int seeds are reproducible
    assert space.sample(7, 30) != space.sample(8, 30)
    assert space.sample(np.random.default_rng(3), 4) == space.sample(np.random.default_rng(3), 4)
    assert space.sample(0, 0) == []


def test_min_and_max_arch(space: SearchSpace) -> None:
    lo, hi = space.min_arch(), space.max_arch()
    space.validate(lo)
    space.validate(hi)
    assert lo == space.canonical(lo) and hi == space.canonical(hi)
    assert lo == {
        "ks": [min(space.kernel_sizes)] * space.n_blocks,
        "e": [min(space.expand_ratios)] * space.n_blocks,
        "d": [min(space.depths)] * space.n_stages,
        "r": min(space.resolutions),
    }
    assert hi == {
        "ks": [max(space.kernel_sizes)] * space.n_blocks,
        "e": [max(space.expand_ratios)] * space.n_blocks,
        "d": [max(space.depths)] * space.n_stages,
        "r": max(space.resolutions),
    }
    r = space.resolutions[len(space.resolutions) // 2]
    assert space.min_arch(r)["r"] == r and space.max_arch(r)["r"] == r
    with pytest.raises(ValueError, match="'r'"):
        space.max_arch(max(space.resolutions) + 1)


# ---------------------------------------------------------------------------------------- size


@pytest.mark.parametrize(
    "restriction",
    [
        {"kernel_sizes": [3, 5], "expand_ratios": [3]},
        {"kernel_sizes": [7], "expand_ratios": [4, 6], "depths": [2, 4]},
        {"kernel_sizes": [3], "expand_ratios": [3], "depths": [3, 4]},
    ],
    ids=["k35-e3-d234", "k7-e46-d24", "k3-e3-d34"],
)
def test_size_matches_brute_force(space: SearchSpace, restriction: dict[str, list[int]]) -> None:
    """Enumerate every raw combination of one stage (and of two stages jointly) and count subnets.

    Stages are independent, so the whole space has |R| * K**n_stages subnets when one stage alone
    has K distinct (canonical) configurations; the two-stage enumeration checks that independence.
    """
    resolutions = list(space.resolutions[:2])
    small = get_space(space.name, resolutions=resolutions, **restriction)  # type: ignore[arg-type]
    base = small.min_arch()
    per_slot = list(itertools.product(small.kernel_sizes, small.expand_ratios))
    depth = small.max_depth

    def stage_configs() -> list[tuple[tuple[tuple[int, int], ...], int]]:
        return list(itertools.product(itertools.product(per_slot, repeat=depth), small.depths))

    def put(arch: dict[str, Any], stage: int, config: tuple[tuple[tuple[int, int], ...], int]) -> None:
        genes, d = config
        for pos, (k, e) in enumerate(genes):
            arch["ks"][stage * depth + pos] = k
            arch["e"][stage * depth + pos] = e
        arch["d"][stage] = d

    one_stage = []
    for config in stage_configs():
        arch = copy_arch(base)
        put(arch, small.n_stages - 1, config)
        one_stage.append(arch)
    k_one = len({small.key(a) for a in one_stage})
    assert k_one == len({tuple(map(tuple, (a["ks"], a["e"], a["d"]))) for a in map(small.canonical, one_stage)})
    expected_one = sum((len(small.kernel_sizes) * len(small.expand_ratios)) ** d for d in small.depths)
    assert k_one == expected_one

    two_stages = []
    for c0, c1, r in itertools.product(stage_configs(), stage_configs(), resolutions):
        arch = copy_arch(base)
        arch["r"] = r
        put(arch, 0, c0)
        put(arch, 1, c1)
        two_stages.append(arch)
    distinct = np.unique(small.to_matrix(two_stages), axis=0)
    assert len(distinct) == len(resolutions) * k_one**2

    assert small.size == len(resolutions) * k_one**small.n_stages


def test_size_of_a_fully_enumerable_space(space: SearchSpace) -> None:
    """Whole-space brute force where every raw combination can be listed (one gene choice per slot)."""
    small = get_space(space.name, kernel_sizes=[5], expand_ratios=[4], resolutions=list(space.resolutions[-2:]))
    archs = [
        {"ks": [5] * small.n_blocks, "e": [4] * small.n_blocks, "d": list(d), "r": r}
        for d in itertools.product(small.depths, repeat=small.n_stages)
        for r in small.resolutions
    ]
    assert small.size == len({small.key(a) for a in archs}) == 2 * 3**5


# ---------------------------------------------------------------------------------------- canonical & key


def test_skipped_slots_do_not_change_the_subnet(space: SearchSpace) -> None:
    rng = np.random.default_rng(5)
    for sampled in space.sample(rng, 20):
        arch = copy_arch(sampled)
        arch["d"] = [min(space.depths)] * space.n_stages
        base = space.canonical(arch)
        other = copy_arch(arch)
        act = active_slots(space, arch["d"])
        for j in range(space.n_blocks):
            if not act[j]:
                other["ks"][j] = int(rng.choice(space.kernel_sizes))
                other["e"][j] = int(rng.choice(space.expand_ratios))
        other["ks"][space.n_blocks - 1] = max(space.kernel_sizes)  # surely skipped, surely not canonical
        other["e"][space.n_blocks - 1] = max(space.expand_ratios)
        assert other != base
        assert space.canonical(other) == base
        assert space.key(other) == space.key(base) == space.key(arch)
        # skipped slots of the canonical form hold the smallest choices
        for j in range(space.n_blocks):
            if not act[j]:
                assert base["ks"][j] == min(space.kernel_sizes) and base["e"][j] == min(space.expand_ratios)
        # changing an active gene does change the subnet
        changed = copy_arch(base)
        changed["ks"][0] = (
            max(space.kernel_sizes) if base["ks"][0] != max(space.kernel_sizes) else min(space.kernel_sizes)
        )
        assert space.key(changed) != space.key(base)


def test_key_format_and_sensitivity(space: SearchSpace) -> None:
    arch = space.max_arch()
    key = space.key(arch)
    assert isinstance(key, str) and len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    for field, value in (("e", min(space.expand_ratios)), ("ks", min(space.kernel_sizes))):
        other = copy_arch(arch)
        other[field][5] = value
        assert space.key(other) != key
    other = copy_arch(arch)
    other["d"][1] = min(space.depths)
    assert space.key(other) != key
    other = copy_arch(arch)
    other["r"] = min(space.resolutions)
    assert space.key(other) != key


def test_keys_distinguish_different_subnets(space: SearchSpace) -> None:
    archs = space.sample(np.random.default_rng(11), 2000)
    keys = [space.key(a) for a in archs]
    identities = [naive_identity(space, a) for a in archs]
    assert len(set(keys)) == len(set(identities))
    # and the partition agrees: same key iff same subnet
    by_key: dict[str, set[tuple[Any, ...]]] = {}
    for k, ident in zip(keys, identities, strict=True):
        by_key.setdefault(k, set()).add(ident)
    assert all(len(v) == 1 for v in by_key.values())


def test_key_does_not_depend_on_restriction(space: SearchSpace) -> None:
    small = get_space(space.name, kernel_sizes=[5, 7], expand_ratios=[4, 6], resolutions=[space.resolutions[-1]])
    for arch in small.sample(np.random.default_rng(2), 20):
        assert small.key(arch) == space.key(arch)
        # canonical forms differ in skipped slots (smallest *allowed* choice), keys do not
        assert space.key(space.canonical(arch)) == small.key(small.canonical(arch))


_KEY_SCRIPT = """
import json
from nas.spaces import get_space, list_spaces
out = {}
for name in list_spaces():
    s = get_space(name)
    mixed = {"ks": [3, 5, 7, 3] * 5, "e": [6, 4, 3, 6] * 5, "d": [2, 3, 4, 3, 2], "r": s.resolutions[-1]}
    out[name] = [s.key(s.max_arch()), s.key(s.min_arch()), s.key(mixed)]
print(json.dumps(out))
"""


def test_key_is_stable_across_processes() -> None:
    import json

    expected = {}
    for name in ALL_PRESETS:
        s = get_space(name)
        expected[name] = [s.key(s.max_arch()), s.key(s.min_arch()), s.key(mixed_arch(s))]
    outputs = []
    for hash_seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run(
            [sys.executable, "-c", _KEY_SCRIPT], capture_output=True, text=True, env=env, timeout=120, check=True
        )
        outputs.append(json.loads(proc.stdout))
    assert outputs[0] == outputs[1] == expected
    assert all(len(set(keys)) == 3 for keys in expected.values())


# ---------------------------------------------------------------------------------------- matrices & encoding


def naive_encode(space: SearchSpace, arch: Mapping[str, Any]) -> list[float]:
    """Reimplementation of the one-hot layout: kernel per slot | expand per slot | resolution."""
    nk, ne = len(space.kernel_sizes), len(space.expand_ratios)
    act = active_slots(space, arch["d"])
    kernel = [0.0] * (space.n_blocks * nk)
    expand = [0.0] * (space.n_blocks * ne)
    for j in range(space.n_blocks):
        if act[j]:
            kernel[j * nk + space.kernel_sizes.index(arch["ks"][j])] = 1.0
            expand[j * ne + space.expand_ratios.index(arch["e"][j])] = 1.0
    res = [0.0] * len(space.resolutions)
    res[space.resolutions.index(arch["r"])] = 1.0
    return kernel + expand + res


@pytest.mark.parametrize("restricted", [False, True], ids=["full", "restricted"])
def test_encode_matches_naive_one_hot(space: SearchSpace, restricted: bool) -> None:
    if restricted:
        space = space.restrict(kernel_sizes=[3, 7], expand_ratios=[4, 6], resolutions=list(space.resolutions[1:3]))
    archs = [*space.sample(np.random.default_rng(4), 60), space.min_arch(), space.max_arch()]
    # non-canonical input: junk in skipped slots must not show up in the encoding
    junk = copy_arch(space.min_arch())
    junk["ks"][-1] = max(space.kernel_sizes)
    junk["e"][-1] = max(space.expand_ratios)
    archs.append(junk)  # type: ignore[arg-type]
    x = space.encode(archs)
    assert x.shape == (len(archs), space.encoding_size)
    assert space.encoding_size == space.n_blocks * (len(space.kernel_sizes) + len(space.expand_ratios)) + len(
        space.resolutions
    )
    assert x.dtype == np.float32
    expected = np.array([naive_encode(space, dict(a)) for a in archs], dtype=np.float32)
    np.testing.assert_array_equal(x, expected)
    assert x[-1].tolist() == x[-3].tolist()  # junk encodes like min_arch
    assert space.encode([]).shape == (0, space.encoding_size)


def test_matrix_round_trip(space: SearchSpace) -> None:
    archs = [*space.sample(np.random.default_rng(6), 100), space.min_arch(), space.max_arch()]
    m = space.to_matrix(archs)
    assert m.dtype == np.int64
    assert m.shape == (len(archs), 2 * space.n_blocks + space.n_stages + 1)
    assert space.from_matrix(m) == archs
    # columns hold choice indices
    nb, ns = space.n_blocks, space.n_stages
    assert m[:, :nb].max() < len(space.kernel_sizes) and m[:, nb : 2 * nb].max() < len(space.expand_ratios)
    assert m[:, 2 * nb : 2 * nb + ns].max() < len(space.depths) and m[:, -1].max() < len(space.resolutions)
    assert m.min() >= 0
    # a non-canonical arch comes back canonical
    junk = copy_arch(space.min_arch())
    junk["ks"][-1] = max(space.kernel_sizes)
    assert space.from_matrix(space.to_matrix([junk])) == [space.min_arch()]


# ---------------------------------------------------------------------------------------- genetic operators


def test_mutate(space: SearchSpace) -> None:
    archs = space.sample(np.random.default_rng(8), 50)
    assert space.mutate(archs, np.random.default_rng(0), prob=0.0) == archs
    full = space.mutate(archs, np.random.default_rng(0), prob=1.0)
    assert len(full) == len(archs)
    for arch in full:
        space.validate(arch)
        assert space.canonical(arch) == arch
    assert full != archs
    assert space.mutate(archs, 42, prob=0.3) == space.mutate(archs, 42, prob=0.3)
    assert space.mutate(archs, 42, prob=0.3) != space.mutate(archs, 43, prob=0.3)
    half = space.mutate(archs, 1, prob=0.5)
    assert half != archs and half != full
    single = space.mutate(archs[0], 0, prob=1.0)
    assert isinstance(single, dict)
    space.validate(single)
    for bad_prob in (-0.1, 1.5):
        with pytest.raises(ValueError, match="prob"):
            space.mutate(archs, 0, prob=bad_prob)


def test_genotypes_keep_the_genes_of_skipped_slots(space: SearchSpace) -> None:
    genes = space.random_genes(np.random.default_rng(3), 200)
    assert genes.shape == (200, len(space.gene_sizes))
    assert (genes >= 0).all() and (genes < space.gene_sizes).all()
    assert not np.array_equal(genes, space.canonicalize_matrix(genes))  # skipped slots keep their draws
    assert np.array_equal(space.sample_matrix(np.random.default_rng(3), 200), space.canonicalize_matrix(genes))
    crossed = space.crossover_matrix(genes[:100], genes[100:], np.random.default_rng(0), canonical=False)
    assert ((crossed == genes[:100]) | (crossed == genes[100:])).all()
    assert not np.array_equal(crossed, space.canonicalize_matrix(crossed))
    mutated = space.mutate_matrix(genes, np.random.default_rng(0), 1.0, canonical=False)
    assert not np.array_equal(mutated, space.canonicalize_matrix(mutated))


def test_local_mutation_steps_to_a_neighbouring_choice(space: SearchSpace) -> None:
    genes = space.random_genes(np.random.default_rng(4), 500)
    stepped = space.mutate_matrix(genes, np.random.default_rng(0), 1.0, local=1.0, canonical=False)
    multi = space.gene_sizes > 1
    assert (np.abs(stepped - genes)[:, multi] == 1).all()  # every gene moved by exactly one choice
    assert (stepped >= 0).all() and (stepped < space.gene_sizes).all()
    some = space.mutate_matrix(genes, np.random.default_rng(0), 0.05, local=1.0, canonical=False)
    changed = some != genes
    assert 0 < changed.mean() < 0.1 and (np.abs(some - genes)[changed] == 1).all()
    assert np.array_equal(space.mutate_matrix(genes, 5, 0.3, local=0.5), space.mutate_matrix(genes, 5, 0.3, local=0.5))
    with pytest.raises(ValueError, match="local"):
        space.mutate_matrix(genes, 0, 0.1, local=1.5)


def test_crossover_takes_every_active_gene_from_a_parent(space: SearchSpace) -> None:
    rng = np.random.default_rng(9)
    first = space.sample(rng, 40)
    second = space.sample(rng, 40)
    for a, b in zip(first, second, strict=True):
        b["d"] = list(a["d"])  # equal depths: the active slots are the same in both parents
    second = [space.canonical(b) for b in second]
    children = space.crossover(first, second, np.random.default_rng(0))
    assert len(children) == len(first)
    from_first = from_second = 0
    for a, b, child in zip(first, second, children, strict=True):
        space.validate(child)
        assert space.canonical(child) == child
        assert child["d"] == a["d"]
        assert child["r"] in (a["r"], b["r"])
        for j, is_active in enumerate(active_slots(space, a["d"])):
            if not is_active:
                continue
            for field in ("ks", "e"):
                assert child[field][j] in (a[field][j], b[field][j])
                if a[field][j] != b[field][j]:
                    from_first += child[field][j] == a[field][j]
                    from_second += child[field][j] == b[field][j]
    assert from_first > 0 and from_second > 0  # genes really are mixed
    assert space.crossover(first, second, 5) == space.crossover(first, second, 5)
    assert space.crossover(first, second, 5) != space.crossover(first, second, 6)
    assert space.crossover(first, first, 3) == first
    single = space.crossover(first[0], second[0], 0)
    assert isinstance(single, dict)
    space.validate(single)


# ---------------------------------------------------------------------------------------- restriction


def test_restriction_samples_only_allowed_values(space: SearchSpace) -> None:
    resolutions = [space.resolutions[0], space.resolutions[-1]]
    small = get_space(space.name, resolutions=resolutions, kernel_sizes=[3, 5])
    assert small.resolutions == tuple(resolutions) and small.kernel_sizes == (3, 5)
    assert small.expand_ratios == space.expand_ratios and small.depths == space.depths
    assert small.backbone == space.backbone  # weights stay the same
    archs = small.sample(np.random.default_rng(10), 300)
    assert {a["r"] for a in archs} == set(resolutions)
    assert {k for a in archs for k in a["ks"]} == {3, 5}
    assert small.size < space.size
    assert small.max_arch()["ks"] == [5] * small.n_blocks
    bad = copy_arch(space.max_arch())
    bad["r"] = resolutions[-1]
    with pytest.raises(ValueError, match="'ks'"):
        small.validate(bad)
    space.validate(bad)
    # restricting again narrows further; restricting to values outside the restriction fails
    assert small.restrict(kernel_sizes=[5]).kernel_sizes == (5,)
    with pytest.raises(ValueError, match="kernel_sizes"):
        small.restrict(kernel_sizes=[7])


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("kernel_sizes", [4]),
        ("kernel_sizes", [3, 9]),
        ("expand_ratios", [5]),
        ("depths", [5]),
        ("depths", [1, 2]),
        ("resolutions", [1000]),
        ("kernel_sizes", []),
    ],
)
def test_restriction_outside_preset_raises(space: SearchSpace, field: str, values: list[int]) -> None:
    with pytest.raises(ValueError, match=field):
        get_space(space.name, **{field: values})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", OFA_PRESETS)
def test_restriction_to_off_grid_resolution_raises(name: str) -> None:
    with pytest.raises(ValueError, match="resolutions"):
        get_space(name, resolutions=[130])


# ---------------------------------------------------------------------------------------- OFA form


def test_from_ofa(space: SearchSpace) -> None:
    r = space.resolutions[-2]
    native = {"ks": [3, 5, 7, 3] * 5, "e": [6, 4, 3, 6] * 5, "d": [2, 3, 4, 3, 2], "r": r}
    expected = space.canonical(native)
    ofa_eval = {"ks": native["ks"], "e": native["e"], "d": native["d"], "image_size": r}
    ofa_tutorial = {"ks": native["ks"], "e": native["e"], "d": native["d"], "r": [r], "wid": None}
    assert space.from_ofa(ofa_eval) == expected
    assert space.from_ofa(ofa_tutorial) == expected
    assert space.from_ofa(native) == expected
    assert space.key(space.from_ofa(ofa_eval)) == space.key(native)
    with pytest.raises(ValueError, match="'r'"):
        space.from_ofa({**ofa_eval, "image_size": max(space.resolutions) + 2})
    with pytest.raises(ValueError, match="'ks'"):
        space.from_ofa({**ofa_eval, "ks": [4] * 20})


def test_from_ofa_accepts_any_value_in_skipped_slots() -> None:
    space = get_space(W10)
    ks = [3, 5, 7, 3] * 5
    e = [6, 4, 3, 6] * 5
    d = [2, 3, 4, 3, 2]
    zeroed_ks = [k if a else 0 for k, a in zip(ks, active_slots(space, d), strict=True)]
    zeroed_e = [v if a else 0 for v, a in zip(e, active_slots(space, d), strict=True)]
    arch = space.from_ofa({"ks": zeroed_ks, "e": zeroed_e, "d": d, "image_size": 224})
    assert arch == space.canonical({"ks": ks, "e": e, "d": d, "r": 224})


@pytest.mark.parametrize("bad", [{"r": []}, None, ["ks", "e", "d", "r"]], ids=["empty-r-list", "none", "list"])
def test_from_ofa_rejects_bad_input_with_value_error(bad: Any) -> None:
    space = get_space(W10)
    arch = {**mixed_arch(space), **bad} if isinstance(bad, dict) else bad
    with pytest.raises(ValueError, match=r"'r'|dict"):
        space.from_ofa(arch)


# ---------------------------------------------------------------------------------------- bad input


def test_single_and_batch_validation_agree() -> None:
    space = get_space(W10)
    arch = {**mixed_arch(space), "ks": np.array([3, 5, 7, 3] * 5)}

    def accepted(check: Callable[[], object]) -> bool:
        try:
            check()
        except ValueError:
            return False
        return True

    assert accepted(lambda: space.validate(arch)) == accepted(lambda: space.to_matrix([arch]))


def test_canonical_returns_plain_ints_for_numpy_input(space: SearchSpace) -> None:
    arch = space.max_arch()
    numpy_arch = {
        "ks": [np.int64(k) for k in arch["ks"]],
        "e": [np.int32(e) for e in arch["e"]],
        "d": tuple(np.int64(d) for d in arch["d"]),
        "r": np.int64(arch["r"]),
    }
    canon = space.canonical(numpy_arch)
    assert canon == arch
    assert all(type(v) is int for v in [*canon["ks"], *canon["e"], *canon["d"], canon["r"]])
    assert space.key(numpy_arch) == space.key(arch)


def test_batch_operators_check_their_input(space: SearchSpace) -> None:
    assert space.mutate([], 0, prob=0.5) == []
    assert space.crossover([], [], 0) == []
    with pytest.raises(ValueError, match="shape"):
        space.crossover(space.sample(0, 3), space.sample(1, 2), 0)


def _bad_archs(space: SearchSpace) -> list[tuple[str, Callable[[dict[str, Any]], Any], str]]:
    """(id, mutator of a valid arch dict returning the bad input, regex the message must match)."""
    nb, ns = space.n_blocks, space.n_stages
    off_grid = 130 if space.resolutions[0] == 128 else space.resolutions[-1] - 2

    def setitem(field: str, index: int | None, value: Any) -> Callable[[dict[str, Any]], Any]:
        def mutate(arch: dict[str, Any]) -> Any:
            if index is None:
                arch[field] = value
            else:
                arch[field][index] = value
            return arch

        return mutate

    def drop(field: str) -> Callable[[dict[str, Any]], Any]:
        def mutate(arch: dict[str, Any]) -> Any:
            del arch[field]
            return arch

        return mutate

    def add(field: str) -> Callable[[dict[str, Any]], Any]:
        def mutate(arch: dict[str, Any]) -> Any:
            arch[field] = 1
            return arch

        return mutate

    return [
        ("ks-too-short", setitem("ks", None, [3] * (nb - 1)), "'ks'"),
        ("ks-too-long", setitem("ks", None, [3] * (nb + 1)), "'ks'"),
        ("e-too-short", setitem("e", None, [3] * (nb - 1)), "'e'"),
        ("d-too-long", setitem("d", None, [2] * (ns + 1)), "'d'"),
        ("d-empty", setitem("d", None, []), "'d'"),
        ("kernel-4", setitem("ks", 0, 4), "'ks'"),
        ("kernel-4-in-last-slot", setitem("ks", nb - 1, 4), "'ks'"),
        ("expand-5", setitem("e", 7, 5), "'e'"),
        ("depth-5", setitem("d", 2, 5), "'d'"),
        ("depth-1", setitem("d", 0, 1), "'d'"),
        ("depth-0", setitem("d", 4, 0), "'d'"),
        ("negative-kernel", setitem("ks", 3, -3), "'ks'"),
        ("resolution-off-grid", setitem("r", None, off_grid), "'r'"),
        ("resolution-too-big", setitem("r", None, 10**6), "'r'"),
        ("float-kernel", setitem("ks", 0, 3.0), "'ks'"),
        ("all-float-kernels", setitem("ks", None, [3.0] * nb), "'ks'"),
        ("numpy-float-kernel", setitem("ks", 1, np.float64(5.0)), "'ks'"),
        ("string-kernel", setitem("ks", 0, "3"), "'ks'"),
        ("none-kernel", setitem("ks", 0, None), "'ks'"),
        ("nested-kernel", setitem("ks", 0, [3]), "'ks'"),
        ("ks-is-string", setitem("ks", None, "3" * nb), "'ks'"),
        ("ks-is-none", setitem("ks", None, None), "'ks'"),
        ("ks-is-int", setitem("ks", None, 3), "'ks'"),
        ("bool-depth", setitem("d", 0, True), "'d'"),
        ("all-bool-depths", setitem("d", None, [True] * ns), "'d'"),
        ("numpy-bool-depth", setitem("d", 1, np.bool_(True)), "'d'"),
        ("bool-expand", setitem("e", 0, True), "'e'"),
        ("float-resolution", setitem("r", None, float(space.resolutions[0])), "'r'"),
        ("string-resolution", setitem("r", None, str(space.resolutions[0])), "'r'"),
        ("none-resolution", setitem("r", None, None), "'r'"),
        ("bool-resolution", setitem("r", None, True), "'r'"),
        ("list-resolution", setitem("r", None, [space.resolutions[0]]), "'r'"),
        ("unknown-key", add("wid"), "wid"),
        ("image_size-instead-of-r", lambda a: {**{k: v for k, v in a.items() if k != "r"}, "image_size": 224},
         "image_size"),
        ("missing-r", drop("r"), r"missing.*'r'"),
        ("missing-d", drop("d"), r"missing.*'d'"),
        ("empty-dict", lambda a: {}, "missing"),
        ("list-not-dict", lambda a: [a["ks"], a["e"], a["d"], a["r"]], "dict"),
        ("string-not-dict", lambda a: "ks=3", "dict"),
        ("none-not-dict", lambda a: None, "dict"),
        ("int-not-dict", lambda a: 224, "dict"),
    ]  # fmt: skip


_BAD_IDS = [case[0] for case in _bad_archs(get_space(W10))]


@pytest.mark.parametrize("name", [W10, PX32])
@pytest.mark.parametrize("case_id", _BAD_IDS)
def test_bad_arch_raises_value_error_naming_the_field(name: str, case_id: str) -> None:
    space = get_space(name)
    (mutate, pattern) = next((m, p) for cid, m, p in _bad_archs(space) if cid == case_id)
    good = copy_arch(space.sample(np.random.default_rng(0)))
    bad = mutate(copy_arch(good))
    with pytest.raises(ValueError, match=pattern):
        space.validate(bad)
    with pytest.raises(ValueError, match=pattern):
        space.canonical(bad)
    with pytest.raises(ValueError, match=pattern):
        space.key(bad)
    # one bad arch in a batch of good ones spoils the batch, with the same message
    batch = [*space.sample(np.random.default_rng(1), 3), bad, good]
    with pytest.raises(ValueError, match=pattern):
        space.to_matrix(batch)
    with pytest.raises(ValueError, match=pattern):
        space.encode(batch)
    with pytest.raises(ValueError, match=pattern):
        space.mutate(batch, 0, prob=0.5)
