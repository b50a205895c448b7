"""Data sets for accuracy predictors: subnets spread over MACs, evaluated through the supernet, cached as JSON.

The cache is keyed by `SearchSpace.key`, written after every few evaluations, so an interrupted
build resumes where it stopped (`build_dataset`; the Ray-parallel version is
`workers.ray_tasks.search.build_dataset_on_ray`). It records the fingerprint of the supernet it measured
(`supernet_fingerprint`) and refuses to serve another one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.cost import macs_matrix
from nas.space import Arch, RngLike, SearchSpace, as_rng
from predictors.jsonfile import write_json

if TYPE_CHECKING:
    from nas.supernet import OFAMobileNetV3

CACHE_VERSION = 2


def supernet_fingerprint(supernet: OFAMobileNetV3) -> str:
    """sha256 of the supernet's parameter names, shapes and values.

    Buffers (BN running statistics) are left out: evaluation recalibrates them per subnet.
    """
    digest = hashlib.sha256()
    for name, param in supernet.named_parameters():
        tensor = param.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def sample_spread_over_macs(space: SearchSpace, n: int, rng: RngLike = None, pool: int | None = None) -> list[Arch]:
    """`n` distinct subnets spread evenly over the MACs range of the space.

    Draws a random pool (default ``max(20 n, 5000)`` subnets), sorts it by MACs, cuts it into `n`
    equal-count strata (MACs quantiles) and picks one subnet at random from each.

    Raises:
        ValueError: n < 1, or the pool holds fewer than n distinct subnets.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen = as_rng(rng)
    rows = np.unique(space.sample_matrix(gen, pool or max(20 * n, 5000)), axis=0)
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} distinct subnets in the pool for n={n}; the space has {space.size}")
    rows = rows[np.argsort(macs_matrix(space, rows), kind="stable")]
    edges = np.linspace(0, len(rows), n + 1).astype(np.int64)
    picks = edges[:-1] + (gen.random(n) * (edges[1:] - edges[:-1])).astype(np.int64)
    return space.from_matrix(rows[picks])


class EvaluationCache:
    """Measured accuracies of subnets, keyed by `SearchSpace.key`, in one JSON file.

    Args:
        path: the JSON file (created on the first `save`); None keeps the cache in memory.
        space: the subnets' space.
        split: the split the accuracies were measured on (checked when the file exists).
        supernet: `supernet_fingerprint` of the supernet measured (checked when the file exists).

    Raises:
        ValueError: the file exists but holds another split, another supernet's measurements or
            another format.
    """

    def __init__(self, path: str | Path | None, space: SearchSpace, split: str, supernet: str) -> None:
        self.path = None if path is None else Path(path)
        self.space = space
        self.split = split
        self.supernet = supernet
        self.records: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            doc = json.loads(self.path.read_text())
            if doc.get("version") != CACHE_VERSION or doc.get("split") != split:
                raise ValueError(
                    f"{self.path} holds version {doc.get('version')!r} on split {doc.get('split')!r}; "
                    f"expected version {CACHE_VERSION} on split {split!r}"
                )
            if doc.get("supernet") != supernet:
                raise ValueError(
                    f"{self.path} holds measurements of another supernet (fingerprint "
                    f"{str(doc.get('supernet'))[:12]}, this one is {supernet[:12]}); give this supernet "
                    "its own cache file"
                )
            self.records = {r["key"]: r for r in doc["records"]}

    def get(self, arch: Mapping[str, Any]) -> float | None:
        """The cached accuracy of a subnet, or None."""
        record = self.records.get(self.space.key(arch))
        return None if record is None else float(record["acc"])

    def put(self, arch: Mapping[str, Any], acc: float) -> None:
        """Remember one measurement (call `save` to write it)."""
        key = self.space.key(arch)
        self.records[key] = {"key": key, "arch": self.space.canonical(arch), "acc": float(acc)}

    def missing(self, archs: Iterable[Mapping[str, Any]]) -> list[Arch]:
        """The archs not measured yet, canonical, without repeats."""
        out: dict[str, Arch] = {}
        for arch in archs:
            key = self.space.key(arch)
            if key not in self.records:
                out.setdefault(key, self.space.canonical(arch))
        return list(out.values())

    def merge(self, other: EvaluationCache) -> None:
        """Add the measurements of `other` that this cache lacks (call `save` to write them).

        Raises:
            ValueError: `other` holds another split or another supernet's measurements.
        """
        if (other.split, other.supernet) != (self.split, self.supernet):
            raise ValueError(
                f"cannot merge the cache {other.path} (split {other.split!r}, supernet {other.supernet[:12]}) into "
                f"{self.path} (split {self.split!r}, supernet {self.supernet[:12]})"
            )
        for key, record in other.records.items():
            self.records.setdefault(key, record)

    def difference(self, other: EvaluationCache) -> EvaluationCache:
        """The measurements of this cache whose subnets `other` lacks, as a new in-memory cache."""
        out = EvaluationCache(None, self.space, self.split, self.supernet)
        out.records = {key: record for key, record in self.records.items() if key not in other.records}
        return out

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON document."""
        records = list(self.records.values())
        return {"version": CACHE_VERSION, "split": self.split, "supernet": self.supernet, "records": records}

    def save(self) -> None:
        """Write the file atomically (nothing to do for an in-memory cache)."""
        if self.path is not None:
            write_json(self.path, self.to_dict())

    def lookup(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Accuracies of archs that are all cached (KeyError naming the first missing one)."""
        out = []
        for arch in archs:
            acc = self.get(arch)
            if acc is None:
                raise KeyError(f"subnet {self.space.key(arch)} is not in the cache {self.path}")
            out.append(acc)
        return np.asarray(out, dtype=np.float64)


def supernet_top1(supernet: OFAMobileNetV3, split: str, **evaluate_options: Any) -> Callable[[Arch], float]:
    """One subnet's BN-recalibrated top-1 on a split (`nas.train.evaluate`)."""
    from nas.train import evaluate

    def top1(arch: Arch) -> float:
        return evaluate(supernet, arch, split, **evaluate_options).top1

    return top1


def open_cache(cache: str | Path | EvaluationCache | None, supernet: OFAMobileNetV3, split: str) -> EvaluationCache:
    """`cache` as an `EvaluationCache` of `supernet`'s measurements on `split`.

    A JSON file (None: in memory) is opened; an open cache is used as it is. Pass an open cache
    when several calls fill one file: two cache objects on one file would each rewrite it without
    the other's records.

    Raises:
        ValueError: the cache holds another split or another supernet's measurements (or the
            file another format).
    """
    fingerprint = supernet_fingerprint(supernet)
    if not isinstance(cache, EvaluationCache):
        return EvaluationCache(cache, supernet.space, split, fingerprint)
    if cache.split != split:
        raise ValueError(f"the cache {cache.path} holds split {cache.split!r}, not {split!r}")
    if cache.supernet != fingerprint:
        raise ValueError(f"the cache {cache.path} holds measurements of another supernet; give this one its own cache")
    return cache


def build_dataset(
    supernet: OFAMobileNetV3,
    archs: Sequence[Mapping[str, Any]],
    cache: str | Path | EvaluationCache | None = None,
    split: str = "val",
    save_every: int = 10,
    progress: Callable[[int, int], None] | None = None,
    **evaluate_options: Any,
) -> tuple[list[Arch], np.ndarray]:
    """Measure the top-1 of `archs` through the supernet (BN recalibrated), reusing and filling a cache.

    Args:
        supernet: the trained supernet.
        archs: the subnets (e.g. from `sample_spread_over_macs`).
        cache: JSON file of earlier measurements, or an open cache (`open_cache`); written every
            `save_every` new ones.
        split: "val" for training predictors; "test" for final numbers.
        save_every: measurements between cache writes.
        progress: called with (done, total) after each new measurement.
        **evaluate_options: passed to `nas.train.evaluate` (e.g. ``recal_images``).

    Returns:
        The canonical archs and their top-1, in the order given.
    """
    space = supernet.space
    store = open_cache(cache, supernet, split)
    top1 = supernet_top1(supernet, split, **evaluate_options)
    missing = store.missing(archs)
    for i, arch in enumerate(missing):
        store.put(arch, top1(arch))
        if (i + 1) % save_every == 0:
            store.save()
        if progress is not None:
            progress(i + 1, len(missing))
    store.save()
    canonical = [space.canonical(a) for a in archs]
    return canonical, store.lookup(canonical)
