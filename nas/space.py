"""Search spaces: the categorical decisions that pick one subnet out of an elastic supernet.

An architecture ("arch") is a plain dict, JSON-ready::

    {"ks": [20 kernel sizes], "e": [20 expand ratios], "d": [5 stage depths], "r": 224}

Slot ``j`` of ``ks``/``e`` belongs to stage ``j // max_depth`` at position ``j % max_depth``; it
is used only when that position is below the stage's depth. Batches of archs are handled as an
integer matrix of choice indices (`SearchSpace.to_matrix`), on which sampling, mutation,
crossover and encoding are vectorised with numpy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypedDict, overload

import numpy as np
import numpy.typing as npt

from nas.backbone import MBV3Backbone

IntMatrix = npt.NDArray[np.int64]
RngLike = np.random.Generator | int | None


class Arch(TypedDict):
    """One subnet: kernel size and expand ratio per block slot, depth per stage, input resolution."""

    ks: list[int]
    e: list[int]
    d: list[int]
    r: int


ARCH_KEYS = ("ks", "e", "d", "r")


def as_rng(rng: RngLike) -> np.random.Generator:
    """A numpy Generator from a Generator, a seed, or None (fresh entropy)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _as_batch(archs: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], bool]:
    """([archs], True) for a single arch, (list(archs), False) for a sequence."""
    if isinstance(archs, Mapping):
        return [archs], True
    return list(archs), False


def _choices(name: str, values: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(v) for v in values}))
    if not out:
        raise ValueError(f"{name} must not be empty")
    if any(not _is_int(v) or int(v) <= 0 for v in values):
        raise ValueError(f"{name} must be positive integers, got {list(values)}")
    return out


@dataclass(frozen=True)
class SearchSpace:
    """A space of subnets of one OFA-MobileNetV3 backbone.

    The space is immutable and hashable. `restrict` narrows any dimension's choices; the
    backbone (and so the supernet's weights) stays the same.

    Attributes:
        name: the registered preset this space derives from.
        backbone: the network skeleton.
        kernel_sizes: allowed depthwise kernel sizes, ascending.
        expand_ratios: allowed expand ratios, ascending.
        depths: allowed stage depths, ascending.
        resolutions: allowed input resolutions, ascending.
    """

    name: str
    backbone: MBV3Backbone
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    depths: tuple[int, ...]
    resolutions: tuple[int, ...]

    def __post_init__(self) -> None:
        for field, supported in (
            ("kernel_sizes", self.backbone.kernel_sizes),
            ("expand_ratios", self.backbone.expand_ratios),
            ("depths", self.backbone.depths),
        ):
            values = _choices(field, getattr(self, field))
            extra = sorted(set(values) - set(supported))
            if extra:
                raise ValueError(
                    f"{field} {extra} not supported by the {self.name} supernet; allowed: {list(supported)}"
                )
            object.__setattr__(self, field, values)
        object.__setattr__(self, "resolutions", _choices("resolutions", self.resolutions))

    # ------------------------------------------------------------------ structure

    @property
    def n_blocks(self) -> int:
        """Number of elastic block slots (length of ``ks`` and ``e``)."""
        return self.backbone.n_blocks

    @property
    def n_stages(self) -> int:
        """Number of elastic stages (length of ``d``)."""
        return self.backbone.n_stages

    @property
    def max_depth(self) -> int:
        """Block slots per stage."""
        return self.backbone.max_depth

    @property
    def size(self) -> int:
        """Number of distinct subnets (exact; skipped slots do not count twice)."""
        per_block = len(self.kernel_sizes) * len(self.expand_ratios)
        per_stage = sum(per_block**d for d in self.depths)
        return len(self.resolutions) * per_stage**self.n_stages

    @property
    def encoding_size(self) -> int:
        """Width of the feature vectors `encode` returns."""
        return self.n_blocks * (len(self.kernel_sizes) + len(self.expand_ratios)) + len(self.resolutions)

    def restrict(
        self,
        *,
        kernel_sizes: Sequence[int] | None = None,
        expand_ratios: Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        resolutions: Sequence[int] | None = None,
    ) -> SearchSpace:
        """A sub-space whose choices are subsets of this space's.

        Raises:
            ValueError: a requested choice is not in this space, naming the dimension.
        """
        changes: dict[str, Any] = {}
        for field, values in (
            ("kernel_sizes", kernel_sizes),
            ("expand_ratios", expand_ratios),
            ("depths", depths),
            ("resolutions", resolutions),
        ):
            if values is None:
                continue
            requested = _choices(field, values)
            allowed: tuple[int, ...] = getattr(self, field)
            extra = sorted(set(requested) - set(allowed))
            if extra:
                raise ValueError(f"{field} {extra} not in space {self.name}; allowed: {list(allowed)}")
            changes[field] = requested
        return dataclasses.replace(self, **changes) if changes else self

    def with_io(self, *, in_channels: int | None = None, num_classes: int | None = None) -> SearchSpace:
        """The same space over a backbone with another number of input channels and/or classes."""
        if in_channels is None and num_classes is None:
            return self
        return dataclasses.replace(
            self, backbone=self.backbone.with_io(in_channels=in_channels, num_classes=num_classes)
        )

    # ------------------------------------------------------------------ single archs

    def validate(self, arch: Mapping[str, Any]) -> None:
        """Check an arch against this space.

        Raises:
            ValueError: naming the field, the bad value and the allowed values.
        """
        if not isinstance(arch, Mapping):
            raise ValueError(f"arch must be a dict with keys {list(ARCH_KEYS)}, got {type(arch).__name__}")
        unknown = sorted(set(arch) - set(ARCH_KEYS), key=str)
        if unknown:
            raise ValueError(f"arch has unknown key(s) {unknown}; expected keys {list(ARCH_KEYS)}")
        missing = [k for k in ARCH_KEYS if k not in arch]
        if missing:
            raise ValueError(f"arch is missing key(s) {missing}; expected keys {list(ARCH_KEYS)}")
        for field, length, allowed in (
            ("ks", self.n_blocks, self.kernel_sizes),
            ("e", self.n_blocks, self.expand_ratios),
            ("d", self.n_stages, self.depths),
        ):
            values = arch[field]
            if isinstance(values, np.ndarray) and values.ndim == 1:
                values = values.tolist()
            if not isinstance(values, Sequence) or isinstance(values, str):
                raise ValueError(f"arch['{field}'] must be a list of {length} integers, got {values!r}")
            if len(values) != length:
                raise ValueError(f"arch['{field}'] must have {length} entries, got {len(values)}")
            for i, v in enumerate(values):
                if not _is_int(v) or int(v) not in allowed:
                    raise ValueError(f"arch['{field}'][{i}] = {v!r} is not allowed; allowed: {list(allowed)}")
        r = arch["r"]
        if not _is_int(r) or int(r) not in self.resolutions:
            raise ValueError(f"arch['r'] = {r!r} is not allowed; allowed: {list(self.resolutions)}")

    def canonical(self, arch: Mapping[str, Any]) -> Arch:
        """The validated arch with plain ints and the slots of skipped blocks set to the smallest choice.

        Two archs describe the same subnet iff their canonical forms are equal.
        """
        self.validate(arch)
        return self.from_matrix(self._matrix_unchecked([arch]))[0]

    def key(self, arch: Mapping[str, Any]) -> str:
        """A stable 16-hex-digit key of the subnet, equal for equal subnets, the same in every process.

        Only the active slots enter the key, so it does not depend on restrictions of the space.
        """
        canon = self.canonical(arch)
        active = self.active_mask(self._matrix_unchecked([canon]))[0]
        ks = [k for k, a in zip(canon["ks"], active, strict=True) if a]
        es = [e for e, a in zip(canon["e"], active, strict=True) if a]
        text = f"ks={ks};e={es};d={canon['d']};r={canon['r']}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def from_ofa(self, arch: Mapping[str, Any]) -> Arch:
        """Convert an arch in OFA's own form to this one and canonicalise it.

        OFA writes the resolution as ``image_size`` or ``r: [R]``, may add ``wid: None``, and
        may put any value (its encoder writes 0) in the slots of skipped blocks.

        Raises:
            ValueError: naming the field, as `validate` does.
        """
        if not isinstance(arch, Mapping):
            raise ValueError(f"arch must be a dict, got {type(arch).__name__}")
        out = {k: v for k, v in arch.items() if k not in ("image_size", "wid")}
        if "image_size" in arch:
            if "r" in arch:
                raise ValueError("arch has both 'image_size' and 'r'; give one resolution")
            out["r"] = arch["image_size"]
        r = out.get("r")
        if isinstance(r, Sequence) and not isinstance(r, str):
            if len(r) != 1:
                raise ValueError(f"arch['r'] must be one resolution, got {list(r)}")
            out["r"] = r[0]
        depths = out.get("d")
        if isinstance(depths, Sequence) and len(depths) == self.n_stages and all(d in self.depths for d in depths):
            for field, smallest in (("ks", self.kernel_sizes[0]), ("e", self.expand_ratios[0])):
                values = out.get(field)
                if isinstance(values, Sequence) and len(values) == self.n_blocks:
                    out[field] = [
                        v if j % self.max_depth < depths[j // self.max_depth] else smallest
                        for j, v in enumerate(values)
                    ]
        return self.canonical(out)

    def min_arch(self, resolution: int | None = None) -> Arch:
        """The smallest subnet (smallest choice everywhere; smallest resolution unless given)."""
        r = self.resolutions[0] if resolution is None else resolution
        arch = {
            "ks": [self.kernel_sizes[0]] * self.n_blocks,
            "e": [self.expand_ratios[0]] * self.n_blocks,
            "d": [self.depths[0]] * self.n_stages,
            "r": r,
        }
        return self.canonical(arch)

    def max_arch(self, resolution: int | None = None) -> Arch:
        """The largest subnet (largest choice everywhere; largest resolution unless given)."""
        r = self.resolutions[-1] if resolution is None else resolution
        arch = {
            "ks": [self.kernel_sizes[-1]] * self.n_blocks,
            "e": [self.expand_ratios[-1]] * self.n_blocks,
            "d": [self.depths[-1]] * self.n_stages,
            "r": r,
        }
        return self.canonical(arch)

    # ------------------------------------------------------------------ batches (vectorised)

    @cached_property
    def _luts(self) -> tuple[IntMatrix, ...]:
        """Value -> choice index lookup tables (-1 where not allowed), per dimension."""
        luts = []
        for values in (self.kernel_sizes, self.expand_ratios, self.depths, self.resolutions):
            lut = np.full(max(values) + 1, -1, dtype=np.int64)
            lut[list(values)] = np.arange(len(values))
            luts.append(lut)
        return tuple(luts)

    @property
    def _slices(self) -> tuple[slice, slice, slice, int]:
        b, s = self.n_blocks, self.n_stages
        return slice(0, b), slice(b, 2 * b), slice(2 * b, 2 * b + s), 2 * b + s

    def to_matrix(self, archs: Sequence[Mapping[str, Any]]) -> IntMatrix:
        """Validate archs and convert them to canonical choice-index rows.

        Columns: ``n_blocks`` kernel indices, ``n_blocks`` expand indices, ``n_stages`` depth
        indices, one resolution index.

        Raises:
            ValueError: for the first invalid arch, naming the field.
        """
        try:
            return self._matrix_unchecked(archs)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            for arch in archs:
                self.validate(arch)
            raise

    def _matrix_unchecked(self, archs: Sequence[Mapping[str, Any]]) -> IntMatrix:
        n = len(archs)
        if n == 0:
            return np.zeros((0, 2 * self.n_blocks + self.n_stages + 1), dtype=np.int64)
        columns = [
            (np.array([a["ks"] for a in archs]), self.n_blocks),
            (np.array([a["e"] for a in archs]), self.n_blocks),
            (np.array([a["d"] for a in archs]), self.n_stages),
            (np.array([a["r"] for a in archs]), None),
        ]
        parts = []
        for (raw, width), lut in zip(columns, self._luts, strict=True):
            # Anything but a rectangular integer array (floats, strings, ragged lists) takes the
            # slow path, where `validate` names the problem.
            if raw.dtype.kind not in "iu" or raw.shape != ((n,) if width is None else (n, width)):
                raise ValueError("not an integer matrix of the right shape")
            values = raw.astype(np.int64).reshape(n, -1)
            if values.size and (values.min() < 0 or values.max() >= len(lut)):
                raise ValueError("value out of range")
            idx = lut[values]
            if (idx < 0).any():
                raise ValueError("value not allowed")
            parts.append(idx)
        for a in archs:
            if len(a) != len(ARCH_KEYS):
                raise ValueError("unknown keys")
        return self.canonicalize_matrix(np.concatenate(parts, axis=1))

    def from_matrix(self, matrix: IntMatrix) -> list[Arch]:
        """Convert choice-index rows back to arch dicts."""
        k_sl, e_sl, d_sl, r_col = self._slices
        ks = np.asarray(self.kernel_sizes)[matrix[:, k_sl]].tolist()
        es = np.asarray(self.expand_ratios)[matrix[:, e_sl]].tolist()
        ds = np.asarray(self.depths)[matrix[:, d_sl]].tolist()
        rs = np.asarray(self.resolutions)[matrix[:, r_col]].tolist()
        return [{"ks": k, "e": e, "d": d, "r": r} for k, e, d, r in zip(ks, es, ds, rs, strict=True)]

    def active_mask(self, matrix: IntMatrix) -> npt.NDArray[np.bool_]:
        """Boolean (n, n_blocks): which block slots run in each row's subnet."""
        depth = np.asarray(self.depths)[matrix[:, self._slices[2]]]
        position = np.arange(self.max_depth)
        return (position[None, None, :] < depth[:, :, None]).reshape(len(matrix), self.n_blocks)

    def canonicalize_matrix(self, matrix: IntMatrix) -> IntMatrix:
        """Set the kernel and expand indices of skipped slots to 0 (the smallest choice)."""
        inactive = ~self.active_mask(matrix)
        out = matrix.copy()
        k_sl, e_sl, _, _ = self._slices
        out[:, k_sl][inactive] = 0
        out[:, e_sl][inactive] = 0
        return out

    @property
    def gene_sizes(self) -> npt.NDArray[np.int64]:
        """The number of choices of every column of a choice-index row."""
        b, s = self.n_blocks, self.n_stages
        counts = [len(self.kernel_sizes)] * b + [len(self.expand_ratios)] * b + [len(self.depths)] * s
        return np.array([*counts, len(self.resolutions)], dtype=np.int64)

    def random_genes(self, rng: RngLike, n: int) -> IntMatrix:
        """`n` uniformly random rows, not canonicalised (skipped slots keep their drawn values).

        Genetic searches keep such rows as genotypes, so that a block that is skipped and later
        becomes active again gets back its earlier kernel and expand ratio.
        """
        gen = as_rng(rng)
        b, s = self.n_blocks, self.n_stages
        return np.concatenate(
            [
                gen.integers(0, len(self.kernel_sizes), (n, b)),
                gen.integers(0, len(self.expand_ratios), (n, b)),
                gen.integers(0, len(self.depths), (n, s)),
                gen.integers(0, len(self.resolutions), (n, 1)),
            ],
            axis=1,
        )

    def sample_matrix(self, rng: RngLike, n: int) -> IntMatrix:
        """`n` uniformly random canonical rows (each slot, depth and resolution drawn independently)."""
        return self.canonicalize_matrix(self.random_genes(rng, n))

    def mutate_matrix(
        self, matrix: IntMatrix, rng: RngLike, prob: float, *, local: float = 0.0, canonical: bool = True
    ) -> IntMatrix:
        """Mutation: every gene changes with probability `prob`.

        Args:
            matrix: the rows to mutate.
            rng: random generator or seed.
            prob: per-gene probability of a change.
            local: the share of changes that step to a neighbouring choice (the choices of every gene
                are ordered: kernel, expand ratio, depth, resolution); the others redraw the gene
                uniformly, as OFA's evolution does (local=0).
            canonical: canonicalise the result (False keeps genotypes, see `random_genes`).
        """
        for option, value in (("mutation prob", prob), ("local", local)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{option} must be in [0, 1], got {value}")
        gen = as_rng(rng)
        fresh = self.random_genes(gen, len(matrix))
        change = gen.random(matrix.shape) < prob
        if local > 0:
            sizes = self.gene_sizes
            step = matrix + np.where(gen.random(matrix.shape) < 0.5, -1, 1)
            step = np.where(step < 0, 1, np.where(step >= sizes, sizes - 2, step))  # reflect at the ends
            step = np.clip(step, 0, sizes - 1)  # genes with a single choice
            fresh = np.where(gen.random(matrix.shape) < local, step, fresh)
        out = np.where(change, fresh, matrix)
        return self.canonicalize_matrix(out) if canonical else out

    def crossover_matrix(
        self, first: IntMatrix, second: IntMatrix, rng: RngLike, *, canonical: bool = True
    ) -> IntMatrix:
        """Uniform crossover: every gene comes from either parent with probability 1/2."""
        if first.shape != second.shape:
            raise ValueError(f"parents differ in shape: {first.shape} vs {second.shape}")
        take_second = as_rng(rng).random(first.shape) < 0.5
        out = np.where(take_second, second, first)
        return self.canonicalize_matrix(out) if canonical else out

    def encode_matrix(self, matrix: IntMatrix) -> npt.NDArray[np.float32]:
        """One-hot features: kernel per slot, expand per slot (all zero for skipped slots), resolution."""
        n = len(matrix)
        k_sl, e_sl, _, r_col = self._slices
        nk, ne = len(self.kernel_sizes), len(self.expand_ratios)
        active = self.active_mask(matrix)
        out = np.zeros((n, self.encoding_size), dtype=np.float32)
        rows = np.arange(n)[:, None]
        slots = np.arange(self.n_blocks)[None, :]
        out[rows, slots * nk + matrix[:, k_sl]] = active
        e_base = self.n_blocks * nk
        out[rows, e_base + slots * ne + matrix[:, e_sl]] = active
        out[np.arange(n), e_base + self.n_blocks * ne + matrix[:, r_col]] = 1.0
        return out

    # ------------------------------------------------------------------ list-of-dict conveniences

    @overload
    def sample(self, rng: RngLike = None, n: None = None) -> Arch: ...
    @overload
    def sample(self, rng: RngLike, n: int) -> list[Arch]: ...
    def sample(self, rng: RngLike = None, n: int | None = None) -> Arch | list[Arch]:
        """Draw one arch (``n`` omitted) or a list of ``n`` archs, uniformly per decision."""
        archs = self.from_matrix(self.sample_matrix(rng, 1 if n is None else n))
        return archs[0] if n is None else archs

    @overload
    def mutate(self, archs: Arch, rng: RngLike, prob: float = 0.1) -> Arch: ...
    @overload
    def mutate(self, archs: Sequence[Arch], rng: RngLike, prob: float = 0.1) -> list[Arch]: ...
    def mutate(self, archs: Arch | Sequence[Arch], rng: RngLike, prob: float = 0.1) -> Arch | list[Arch]:
        """Mutate one arch or a list of archs (see `mutate_matrix`)."""
        batch, single = _as_batch(archs)
        out = self.from_matrix(self.mutate_matrix(self.to_matrix(batch), rng, prob))
        return out[0] if single else out

    @overload
    def crossover(self, first: Arch, second: Arch, rng: RngLike) -> Arch: ...
    @overload
    def crossover(self, first: Sequence[Arch], second: Sequence[Arch], rng: RngLike) -> list[Arch]: ...
    def crossover(self, first: Arch | Sequence[Arch], second: Arch | Sequence[Arch], rng: RngLike) -> Arch | list[Arch]:
        """Cross one pair of archs, or two equally long lists pairwise (see `crossover_matrix`)."""
        (a, single), (b, _) = _as_batch(first), _as_batch(second)
        out = self.from_matrix(self.crossover_matrix(self.to_matrix(a), self.to_matrix(b), rng))
        return out[0] if single else out

    def encode(self, archs: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float32]:
        """Feature matrix of shape (len(archs), encoding_size); see `encode_matrix`."""
        return self.encode_matrix(self.to_matrix(archs))

    def describe(self) -> str:
        """One line: the name, the choices and the size of the space."""
        return (
            f"{self.name}: ks {list(self.kernel_sizes)}, e {list(self.expand_ratios)}, d {list(self.depths)}, "
            f"r {self.resolutions[0]}..{self.resolutions[-1]} ({len(self.resolutions)} values); "
            f"{self.size:.3e} subnets (10^{math.log10(self.size):.1f})"
        )
