"""Image classification datasets, held in memory, and fast batches for training.

>>> from nas.data import BatchLoader, load_dataset, split_dataset
>>> data = load_dataset("fashion_mnist")              # or "demo", "mnist", "cifar10", "imagefolder", "npz"
>>> splits = split_dataset(data, val_fraction=0.1, seed=0)
>>> loader = BatchLoader(splits["train"], batch_size=256, mean=data.mean, std=data.std,
...                      shuffle=True, augment=True, hflip=data.hflip)
>>> for images, labels in loader.epoch(0): ...       # float32 NCHW, channels_last; int64

Registered datasets (`list_datasets()`; add more with `@register_dataset`):

- ``demo``: scikit-learn's bundled digits (1797 real 8x8 scans) resized to 28x28; no files needed.
- ``fashion_mnist``, ``mnist``: the four IDX files (``.gz`` or raw), looked up in ``root``,
  ``$HWNAS_DATA_DIR/<name>``, ``~/.cache/hwnas/<name>`` and ``/usr/share/datasets/fashion-mnist``
  (Debian's ``dataset-fashion-mnist``) or ``/usr/share/datasets/mnist``; when absent, downloaded
  (base URL overridable with ``$HWNAS_FASHION_MNIST_URL`` / ``$HWNAS_MNIST_URL``) and md5-checked.
- ``cifar10``: the python batches (``cifar-10-batches-py``), read with a restricted unpickler.
- ``imagefolder``: ``root/train/<class>/*.png|jpg|jpeg|bmp`` and ``root/test/<class>/...``.
- ``npz``: a ``.npz`` file with ``x``, ``y`` and optionally ``x_test``, ``y_test``, ``classes``, ``hflip``.

Every check of the files happens in `load_dataset`, before any training starts.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import pickle
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

logger = logging.getLogger(__name__)

_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

DATA_DIR_ENV = "HWNAS_DATA_DIR"
"""Environment variable naming a directory that holds one sub-directory per dataset."""

_DEBIAN_DATASETS = Path("/usr/share/datasets")
_DOWNLOAD_TIMEOUT_S = 60.0
_STATS_CHUNK = 4096


def read_idx(path: str | Path) -> npt.NDArray[np.generic]:
    """Read an IDX file (``.gz`` or raw) into an array of its declared shape.

    Raises:
        ValueError: the file is not IDX (bad magic, unknown type code, or wrong size) or not valid
            gzip, naming it.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} is not a valid gzip file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic bytes)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header declares {shape} ({expected} bytes) but holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------------------------------
# The in-memory dataset and its splits
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageData:
    """A labelled image dataset held in memory.

    Construction checks every invariant below (`ValueError` naming the dataset and field);
    `ImageData.from_arrays` builds one from raw arrays and computes ``mean`` and ``std``.

    Attributes:
        name: the dataset's name.
        train_images: (N, H, W, C) uint8, C = 1 or 3.
        train_labels: (N,) int64 in [0, num_classes).
        test_images: (M, H, W, C) uint8, same H, W, C as the training images.
        test_labels: (M,) int64 in [0, num_classes).
        classes: the class names; label i is ``classes[i]``.
        mean: per channel, of ``train_images / 255``.
        std: per channel, of ``train_images / 255``; all positive.
        hflip: whether a horizontal flip is a label-preserving augmentation.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool

    def __post_init__(self) -> None:
        if not self.classes or not all(isinstance(c, str) for c in self.classes):
            raise ValueError(f"dataset {self.name!r}: classes must be a non-empty tuple of str, got {self.classes!r}")
        for part in ("train", "test"):
            images, labels = getattr(self, f"{part}_images"), getattr(self, f"{part}_labels")
            check_labelled_images(
                images, labels, self.num_classes, f"dataset {self.name!r} {part}_images", f"{part}_labels"
            )
            if labels.dtype != np.int64:
                raise ValueError(f"dataset {self.name!r}: {part}_labels must be int64, got {labels.dtype}")
        if self.test_images.shape[1:] != self.train_images.shape[1:]:
            raise ValueError(
                f"dataset {self.name!r}: test images are {self.test_images.shape[1:]} (H, W, C) "
                f"but training images are {self.train_images.shape[1:]}"
            )
        if len(self.mean) != self.channels or len(self.std) != self.channels or min(self.std) <= 0:
            raise ValueError(
                f"dataset {self.name!r}: mean {self.mean} and std {self.std} need one value per channel "
                f"({self.channels}), std > 0"
            )

    @classmethod
    def from_arrays(
        cls,
        name: str,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        classes: Sequence[str],
        *,
        hflip: bool,
    ) -> ImageData:
        """Build a dataset from uint8 images ((N, H, W) or (N, H, W, C)) and integer labels.

        Labels are converted to int64 and ``mean``/``std`` computed exactly from the training images.

        Raises:
            ValueError: an invariant of `ImageData` does not hold (see `check_labelled_images`), or
                a channel of the training images is constant (its std would be 0).
        """
        train_images, test_images = _with_channel_axis(train_images), _with_channel_axis(test_images)
        for part, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
            check_labelled_images(images, labels, len(classes), f"dataset {name!r} {part} images", f"{part} labels")
        mean, std = _channel_stats(train_images, name)
        return cls(
            name=name,
            train_images=train_images,
            train_labels=train_labels.astype(np.int64),
            test_images=test_images,
            test_labels=test_labels.astype(np.int64),
            classes=tuple(classes),
            mean=mean,
            std=std,
            hflip=hflip,
        )

    @property
    def channels(self) -> int:
        """Image channels, 1 or 3."""
        return int(self.train_images.shape[3])

    @property
    def image_size(self) -> int:
        """Image height in pixels."""
        return int(self.train_images.shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    Attributes:
        images: (N, H, W, C) uint8.
        labels: (N,) int64.
    """

    images: np.ndarray
    labels: np.ndarray


def check_labelled_images(
    images: np.ndarray, labels: np.ndarray, num_classes: int, images_source: str, labels_source: str
) -> None:
    """Check that images and labels go together, for loaders to call with the names of their files.

    Args:
        images: must be (N, H, W, C) uint8 with C 1 or 3 and N >= 1.
        labels: must be (N,) integers in [0, num_classes).
        num_classes: number of classes.
        images_source: where the images come from (a file name), for the messages.
        labels_source: where the labels come from.

    Raises:
        ValueError: naming the source and what is wrong.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3) or 0 in images.shape:
        raise ValueError(
            f"{images_source}: expected uint8 images of shape (N, H, W, C) with C 1 or 3 and N, H, W > 0, "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{labels_source}: expected a 1-D array of integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{images_source} holds {len(images)} images but {labels_source} holds {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise ValueError(
            f"{labels_source}: label {bad[0]} is outside [0, {num_classes}) ({num_classes} classes); "
            f"{len(bad)} labels are out of range"
        )


def split_dataset(data: ImageData, val_fraction: float = 0.1, seed: int = 0) -> dict[str, Split]:
    """Split off a validation set from the training images.

    The validation set holds ``round(val_fraction * N)`` training images, apportioned to the classes
    in proportion to their sizes (stratified). It is a deterministic function of ``(seed,
    val_fraction)``, and for one seed a larger fraction gives a superset. Train and val come in a
    seeded random order, so that their first k samples are a class-balanced subset (see
    `BatchLoader`'s ``limit``); test is the dataset's test split, untouched.

    Args:
        data: the dataset.
        val_fraction: share of the training images that goes to "val", in [0, 1).
        seed: a non-negative integer.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``.

    Raises:
        ValueError: a fraction outside [0, 1) or a negative seed.
    """
    train, val = _stratified_holdout(data.train_labels, val_fraction, seed)
    return {
        "train": Split(data.train_images[train], data.train_labels[train]),
        "val": Split(data.train_images[val], data.train_labels[val]),
        "test": Split(data.test_images, data.test_labels),
    }


def _stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) index arrays, each in one seeded random order; held out is stratified."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    order = np.random.default_rng(seed).permutation(len(labels))
    by_class = order[np.argsort(labels[order], kind="stable")]
    _, counts = np.unique(labels, return_counts=True)
    quotas = _apportion(counts, fraction)
    starts = np.cumsum(counts) - counts
    held = np.zeros(len(labels), dtype=bool)
    for start, quota in zip(starts, quotas, strict=True):
        held[by_class[start : start + quota]] = True
    return order[~held[order]], order[held[order]]


def _apportion(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Integer shares of ``fraction * counts.sum()`` (rounded), by largest remainder."""
    exact = counts * fraction
    quotas = np.floor(exact).astype(np.int64)
    missing = int(np.floor(fraction * counts.sum() + 0.5)) - int(quotas.sum())
    quotas[np.argsort(-(exact - quotas), kind="stable")[:missing]] += 1
    return quotas


def _with_channel_axis(images: np.ndarray) -> np.ndarray:
    return images[..., np.newaxis] if images.ndim == 3 else images


def _channel_stats(images: np.ndarray, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of ``images / 255``, from a histogram of the uint8 values."""
    channels = images.shape[-1]
    offsets = np.arange(channels) * 256
    hist = np.zeros(channels * 256, dtype=np.int64)
    for start in range(0, len(images), _STATS_CHUNK):
        block = images[start : start + _STATS_CHUNK].reshape(-1, channels)
        hist += np.bincount((block.astype(np.intp) + offsets).ravel(), minlength=channels * 256)
    values = np.arange(256) / 255.0
    probs = hist.reshape(channels, 256) / max(1, hist.sum() // channels)
    mean = probs @ values
    std = np.sqrt(np.maximum(probs @ values**2 - mean**2, 0.0))
    if np.any(std == 0):
        raise ValueError(f"dataset {name!r}: channel {int(np.argmin(std))} of the training images is constant")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

DatasetLoader = Callable[[Path | None, bool], ImageData]
"""``loader(root, download) -> ImageData``; ``root`` is None when the caller gave none."""

_REGISTRY: dict[str, DatasetLoader] = {}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator registering a loader ``(root: Path | None, download: bool) -> ImageData``.

    Raises:
        ValueError: the name is taken.
    """

    def decorator(loader: DatasetLoader) -> DatasetLoader:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[name] = loader
        return loader

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_REGISTRY)


def load_dataset(name: str, root: str | Path | None = None, *, download: bool = True) -> ImageData:
    """Load a registered dataset into memory, checking everything about its files.

    Args:
        name: a name from `list_datasets()`.
        root: where the files are: a directory for "fashion_mnist", "mnist", "cifar10" and
            "imagefolder", a file for "npz"; ignored by "demo". "fashion_mnist", "mnist" and
            "cifar10" search it first, then ``$HWNAS_DATA_DIR/<name>``, ``~/.cache/hwnas/<name>``
            (and, for the first two, Debian's ``/usr/share/datasets``), and take the first
            directory that holds all their files (the one used is logged at INFO level).
        download: fetch missing files where the dataset has a download source (Fashion-MNIST, MNIST).

    Raises:
        KeyError: unknown name (the message lists the registered ones).
        FileNotFoundError: the files are not there (the message lists every place looked and how
            to get them).
        ValueError: a file is malformed, or images and labels disagree (the message names the file).
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(list_datasets())}")
    return _REGISTRY[name](None if root is None else Path(root).expanduser(), download)


# --------------------------------------------------------------------------------------------------
# Where files are looked for
# --------------------------------------------------------------------------------------------------


def _search_dirs(name: str, root: Path | None, debian_dir: str | None = None) -> list[tuple[str, Path | None]]:
    """(description, directory) in lookup order; directory None where an unset variable names none."""
    env = os.environ.get(DATA_DIR_ENV)
    places: list[tuple[str, Path | None]] = [("root", root)] if root is not None else []
    places.append((f"${DATA_DIR_ENV}/{name}", Path(env).expanduser() / name if env else None))
    places.append(("cache", _cache_dir(name)))
    if debian_dir is not None:
        places.append(("Debian datasets", _DEBIAN_DATASETS / debian_dir))
    return places


def _cache_dir(name: str) -> Path:
    return Path.home() / ".cache" / "hwnas" / name


def _download_dir(name: str) -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() / name if env else _cache_dir(name)


def _describe_places(places: Sequence[tuple[str, Path | None]], missing: Callable[[Path], str]) -> str:
    lines = []
    for label, directory in places:
        if directory is None:
            lines.append(f"  {label}: (not set)")
        elif not directory.is_dir():
            lines.append(f"  {label}: {directory} (no such directory)")
        else:
            lines.append(f"  {label}: {directory} ({missing(directory)})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# demo: scikit-learn's digits
# --------------------------------------------------------------------------------------------------

_DEMO_SIZE = 28
_DEMO_TEST_FRACTION = 0.2


@register_dataset("demo")
def _load_demo(root: Path | None, download: bool) -> ImageData:
    """scikit-learn's 1797 8x8 digits, 16 grey levels scaled to 0..255, resized to 28x28 (bilinear).

    Needs no files (``root`` and ``download`` are ignored). The test split is a stratified 20%,
    the same every time.
    """
    from sklearn.datasets import load_digits  # imported here: slow, and only the demo needs it

    digits = load_digits()
    small = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.stack(
        [np.asarray(Image.fromarray(img).resize((_DEMO_SIZE, _DEMO_SIZE), Image.Resampling.BILINEAR)) for img in small]
    )
    labels = digits.target.astype(np.int64)
    train, test = _stratified_holdout(labels, _DEMO_TEST_FRACTION, seed=0)
    classes = [str(d) for d in range(10)]
    return ImageData.from_arrays("demo", images[train], labels[train], images[test], labels[test], classes, hflip=False)


# --------------------------------------------------------------------------------------------------
# fashion_mnist, mnist: IDX files
# --------------------------------------------------------------------------------------------------

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class _IdxSource:
    title: str
    debian_dir: str
    apt_package: str | None
    url: str
    url_env: str
    md5: Mapping[str, str]
    classes: tuple[str, ...]
    hflip: bool


_IDX_SOURCES: dict[str, _IdxSource] = {
    "fashion_mnist": _IdxSource(
        title="Fashion-MNIST",
        debian_dir="fashion-mnist",
        apt_package="dataset-fashion-mnist",
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        url_env="HWNAS_FASHION_MNIST_URL",
        # Fashion-MNIST's README.
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        hflip=True,
    ),
    "mnist": _IdxSource(
        title="MNIST",
        debian_dir="mnist",
        apt_package=None,
        url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        url_env="HWNAS_MNIST_URL",
        # The original files (yann.lecun.com), mirrored unchanged; the same table as torchvision's.
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        classes=tuple(str(d) for d in range(10)),
        hflip=False,
    ),
}


@register_dataset("fashion_mnist")
def _load_fashion_mnist(root: Path | None, download: bool) -> ImageData:
    """Fashion-MNIST: 60,000 + 10,000 28x28 grey images of 10 kinds of clothing."""
    return _load_idx_dataset("fashion_mnist", root, download)


@register_dataset("mnist")
def _load_mnist(root: Path | None, download: bool) -> ImageData:
    """MNIST: 60,000 + 10,000 28x28 grey handwritten digits."""
    return _load_idx_dataset("mnist", root, download)


def _load_idx_dataset(name: str, root: Path | None, download: bool) -> ImageData:
    source = _IDX_SOURCES[name]
    places = _search_dirs(name, root, source.debian_dir)
    files = _find_idx_files(places)
    if files is None:
        looked = _describe_places(places, _missing_idx_files)  # as it was before any download
        target = _download_dir(name)
        failure = "Downloading was not attempted (download=False)"
        if download:
            try:
                _download_idx(source, target)
            except (OSError, http.client.HTTPException) as err:
                failure = f"Downloading from {_base_url(source)} into {target} failed: {err}"
            files = _find_idx_files([("download", target)])
        if files is None:
            raise FileNotFoundError(_idx_not_found(name, source, looked, target, failure))
    logger.info("%s: reading %s", name, files["train-images-idx3-ubyte"].parent)
    num_classes = len(source.classes)
    train = _read_idx_pair(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"], num_classes)
    test = _read_idx_pair(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"], num_classes)
    return ImageData.from_arrays(name, *train, *test, source.classes, hflip=source.hflip)


def _idx_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _find_idx_files(places: Sequence[tuple[str, Path | None]]) -> dict[str, Path] | None:
    """The four files, from the first directory that holds them all."""
    for _, directory in places:
        if directory is not None:
            found = {stem: path for stem in _IDX_FILES if (path := _idx_file(directory, stem)) is not None}
            if len(found) == len(_IDX_FILES):
                return found
    return None


def _missing_idx_files(directory: Path) -> str:
    return "missing " + ", ".join(stem for stem in _IDX_FILES if _idx_file(directory, stem) is None)


def _idx_not_found(name: str, source: _IdxSource, looked: str, target: Path, failure: str) -> str:
    ways = [f"`apt-get install {source.apt_package}`"] if source.apt_package else []
    ways += [
        f"load_dataset({name!r}, download=True) with network access (saves to {target})",
        f"put the four files in a directory passed as root, or in $DIR/{name} with {DATA_DIR_ENV}=$DIR set",
    ]
    return (
        f"{source.title} not found: no directory holds all of {', '.join(_IDX_FILES)} (each .gz or raw). "
        f"Looked in, in this order:\n{looked}\n{failure}.\nTo get it: {'; or '.join(ways)}."
    )


def _base_url(source: _IdxSource) -> str:
    return os.environ.get(source.url_env) or source.url


def _download_idx(source: _IdxSource, target: Path) -> None:
    base = _base_url(source).rstrip("/")
    for stem in _IDX_FILES:
        if _idx_file(target, stem) is None:
            _download(f"{base}/{stem}.gz", target / f"{stem}.gz", source.md5[f"{stem}.gz"])


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch ``url`` into a temporary file beside ``dest``, renamed to ``dest`` only if its md5 matches.

    Raises:
        ValueError: the checksum does not match (the temporary file is deleted).
        OSError: the download failed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        logger.info("downloading %s to %s", url, dest)
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(
                f"{dest.name} downloaded from {url} has md5 {digest.hexdigest()}, expected {md5}: the download "
                f"is corrupt or the server holds another file; it was deleted and nothing was saved to {dest}"
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected images of shape (N, H, W), got shape {images.shape}")
    images = images[..., np.newaxis]
    check_labelled_images(images, labels, num_classes, str(images_path), str(labels_path))
    return images, labels


# --------------------------------------------------------------------------------------------------
# cifar10: the python batches, through a restricted unpickler
# --------------------------------------------------------------------------------------------------

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FILES = (*_CIFAR_TRAIN, "test_batch", "batches.meta")
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR_SIDE = 32


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as protocol-2 pickles written by Python 3 use it for bytes, limited to latin-1."""
    if encoding not in ("latin1", "latin-1"):
        raise ValueError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10's batches hold: dicts, lists, strings, numbers and numpy arrays."""

    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],  # written by numpy 1
        ("numpy._core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],  # written by numpy 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        """The allowed numpy reconstruction functions; anything else is refused.

        Raises:
            ValueError: naming the refused global.
        """
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise ValueError(
                f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only dicts, lists and numpy arrays"
            ) from None


@register_dataset("cifar10")
def _load_cifar10(root: Path | None, download: bool) -> ImageData:
    """CIFAR-10: 50,000 + 10,000 32x32 colour images of 10 classes, from its python batches.

    ``root`` is the ``cifar-10-batches-py`` directory or its parent; without it the same
    places as for Fashion-MNIST are searched. There is no download (``download`` is ignored).
    """
    places = _search_dirs("cifar10", root)
    directory = next((d for _, d in places if d is not None and _cifar_dir(d) is not None), None)
    if directory is None:
        raise FileNotFoundError(
            f"CIFAR-10 not found: no directory holds {', '.join(_CIFAR_FILES)}, itself or in {_CIFAR_DIR}/. "
            f"Looked in, in this order:\n{_describe_places(places, _missing_cifar_files)}\n"
            f"To get it: download {_CIFAR_URL}, extract it and pass the directory as root "
            f"(or extract it into $DIR/cifar10 with {DATA_DIR_ENV}=$DIR set)."
        )
    directory = _cifar_dir(directory) or directory
    logger.info("cifar10: reading %s", directory)
    meta = directory / "batches.meta"
    names = _cifar_field(_unpickle(meta), "label_names", meta)
    if not isinstance(names, list) or not names:
        raise ValueError(f"{meta}: 'label_names' must be a non-empty list of class names, got {names!r:.80}")
    classes = [n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names]
    train = [_cifar_batch(directory / name, len(classes)) for name in _CIFAR_TRAIN]
    test_images, test_labels = _cifar_batch(directory / "test_batch", len(classes))
    train_images, train_labels = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    return ImageData.from_arrays("cifar10", train_images, train_labels, test_images, test_labels, classes, hflip=True)


def _cifar_dir(directory: Path) -> Path | None:
    for candidate in (directory, directory / _CIFAR_DIR):
        if all((candidate / name).is_file() for name in _CIFAR_FILES):
            return candidate
    return None


def _missing_cifar_files(directory: Path) -> str:
    nested = directory / _CIFAR_DIR
    where, prefix = (nested, f"{_CIFAR_DIR}/ ") if nested.is_dir() else (directory, "")
    return prefix + "missing " + ", ".join(name for name in _CIFAR_FILES if not (where / name).is_file())


def _unpickle(path: Path) -> Any:
    with path.open("rb") as fp:
        try:
            return _CifarUnpickler(fp, encoding="latin1").load()
        except Exception as err:  # a malformed pickle can raise almost anything
            raise ValueError(f"{path} cannot be read as a CIFAR-10 python batch: {err}") from err


def _cifar_field(batch: Any, key: str, path: Path) -> Any:
    """``batch[key]``, accepting str keys (Python 2 files read as latin-1) and bytes keys."""
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    for candidate in (key, key.encode()):
        if candidate in batch:
            return batch[candidate]
    raise ValueError(f"{path}: no {key!r} entry (it has {sorted(map(str, batch))})")


def _cifar_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = np.asarray(_cifar_field(batch, "data", path)), np.asarray(_cifar_field(batch, "labels", path))
    pixels = 3 * _CIFAR_SIDE * _CIFAR_SIDE
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        raise ValueError(f"{path}: 'data' must be uint8 of shape (N, {pixels}), got {data.dtype} {data.shape}")
    images = np.ascontiguousarray(data.reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE).transpose(0, 2, 3, 1))
    check_labelled_images(images, labels, num_classes, f"{path} 'data'", f"{path} 'labels'")
    return images, labels


# --------------------------------------------------------------------------------------------------
# imagefolder: root/{train,test}/<class>/*.png
# --------------------------------------------------------------------------------------------------

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


@register_dataset("imagefolder")
def _load_imagefolder(root: Path | None, download: bool) -> ImageData:
    """``root/train/<class>/*`` and ``root/test/<class>/*`` images (.png, .jpg, .jpeg, .bmp).

    Classes are the sorted sub-directory names, the same in both. Images are grey ("L") if all
    of them are, else RGB, and must all have one size. ``download`` is ignored.
    """
    root = _require_root("imagefolder", root, "a directory holding train/<class>/ and test/<class>/")
    classes = _folder_classes(root)
    train_paths, train_labels = _folder_images(root / "train", classes, every_class=True)
    test_paths, test_labels = _folder_images(root / "test", classes, every_class=False)
    if not test_paths:
        raise ValueError(f"{root / 'test'} holds no {'/'.join(sorted(_IMAGE_SUFFIXES))} images")
    mode = _folder_mode([*train_paths, *test_paths])
    train_images, test_images = _read_images(train_paths, mode), _read_images(test_paths, mode)
    return ImageData.from_arrays(
        "imagefolder", train_images, train_labels, test_images, test_labels, classes, hflip=True
    )


def _require_root(name: str, root: Path | None, what: str) -> Path:
    if root is None:
        raise ValueError(f"dataset {name!r} needs root: {what}")
    return root


def _folder_classes(root: Path) -> list[str]:
    found: dict[str, set[str]] = {}
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise FileNotFoundError(
                f"{root / part} is not a directory: imagefolder needs {root}/train/<class>/ and {root}/test/<class>/"
            )
        found[part] = {p.name for p in (root / part).iterdir() if p.is_dir() and not p.name.startswith(".")}
    if found["train"] != found["test"]:
        only_train, only_test = sorted(found["train"] - found["test"]), sorted(found["test"] - found["train"])
        raise ValueError(
            f"{root / 'train'} and {root / 'test'} must hold the same class directories; "
            f"only in train: {only_train}, only in test: {only_test}"
        )
    if not found["train"]:
        raise ValueError(f"{root / 'train'} holds no class directories")
    return sorted(found["train"])


def _folder_images(part: Path, classes: Sequence[str], *, every_class: bool) -> tuple[list[Path], np.ndarray]:
    """The image files of ``part/<class>/`` and their labels; ``every_class``: each must hold one."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (part / name).iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files and every_class:
            raise ValueError(f"{part / name} holds no {'/'.join(sorted(_IMAGE_SUFFIXES))} images")
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def _folder_mode(paths: Sequence[Path]) -> str:
    """Grey ("L") if every image is, else "RGB"; checks that all have the size of the first."""
    first: tuple[Path, tuple[int, int]] | None = None
    grey = True
    for path in paths:
        try:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
        except OSError as err:
            raise ValueError(f"{path} is not a readable image: {err}") from err
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise ValueError(
                f"{path} is {size[0]}x{size[1]} but {first[0]} is {first[1][0]}x{first[1][1]}: "
                f"all images must have one size (resize them first)"
            )
        grey = grey and mode in _GREY_MODES
    return "L" if grey else "RGB"


def _read_images(paths: Sequence[Path], mode: str) -> np.ndarray:
    images = []
    for path in paths:
        try:
            with Image.open(path) as img:
                images.append(np.asarray(img.convert(mode)))
        except OSError as err:
            raise ValueError(f"{path} is not a readable image: {err}") from err
    return np.stack(images)


# --------------------------------------------------------------------------------------------------
# npz: x, y [, x_test, y_test, classes, hflip]
# --------------------------------------------------------------------------------------------------

_NPZ_TEST_FRACTION = 1 / 6


@register_dataset("npz")
def _load_npz(root: Path | None, download: bool) -> ImageData:
    """A ``.npz`` file (read with ``allow_pickle=False``) holding these arrays.

    ``x``: uint8 (N, H, W) or (N, H, W, C) with C 1 or 3; ``y``: (N,) integer labels;
    optional ``x_test`` and ``y_test`` (together; without them a stratified 1/6 of ``x`` is held out,
    the same every time); optional ``classes``: str array of class names (default "0", "1", ...);
    optional ``hflip``: boolean scalar, whether flips preserve the label (default True).
    ``download`` is ignored.
    """
    path = _require_root("npz", root, "the path of a .npz file holding arrays x and y")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npz file: {err}") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array; expected a .npz archive with arrays x and y (np.savez)")
    with archive:
        arrays = {key: _npz_array(archive, key, path) for key in archive.files}
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing or ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError(f"{path} must hold x and y, and x_test with y_test or neither; it holds {sorted(arrays)}")
    x, y = _npz_images(arrays["x"], "x", path), _npz_labels(arrays["y"], "y", path)
    if "x_test" in arrays:
        x_test, y_test = _npz_images(arrays["x_test"], "x_test", path), _npz_labels(arrays["y_test"], "y_test", path)
    else:
        check_labelled_images(x, y, int(y.max(initial=0)) + 1, f"{path} 'x'", f"{path} 'y'")
        train, test = _stratified_holdout(y, _NPZ_TEST_FRACTION, seed=0)
        if len(test) == 0:
            raise ValueError(f"{path}: 'x' holds too few images ({len(x)}) to hold out 1/6; add x_test and y_test")
        x, y, x_test, y_test = x[train], y[train], x[test], y[test]
    classes = _npz_classes(arrays.get("classes"), max(int(y.max(initial=0)), int(y_test.max(initial=0))) + 1, path)
    check_labelled_images(x, y, len(classes), f"{path} 'x'", f"{path} 'y'")
    check_labelled_images(x_test, y_test, len(classes), f"{path} 'x_test'", f"{path} 'y_test'")
    hflip = _npz_flag(arrays.get("hflip"), path)
    return ImageData.from_arrays("npz", x, y, x_test, y_test, classes, hflip=hflip)


def _npz_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as err:
        raise ValueError(f"{path}: key {key!r} holds Python objects, which are not loaded; store plain arrays") from err


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"{path}: {key!r} must be uint8 of shape (N, H, W) or (N, H, W, C), got {x.dtype} {x.shape}")
    return _with_channel_axis(x)


def _npz_labels(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: {key!r} must be a 1-D array of integer labels, got {y.dtype} {y.shape}")
    return y


def _npz_classes(names: np.ndarray | None, num_labels: int, path: Path) -> list[str]:
    if names is None:
        return [str(i) for i in range(num_labels)]
    if names.ndim != 1 or names.dtype.kind != "U" or len(names) == 0:
        raise ValueError(f"{path}: 'classes' must be a 1-D array of str, got {names.dtype} {names.shape}")
    return [str(n) for n in names]


def _npz_flag(flag: np.ndarray | None, path: Path) -> bool:
    if flag is None:
        return True
    if flag.shape != () or flag.dtype != np.bool_:
        raise ValueError(f"{path}: 'hflip' must be a boolean scalar, got {flag.dtype} {flag.shape}")
    return bool(flag)


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


class BatchLoader:
    """Fast in-memory batches: uint8 kept as one torch tensor; per-batch normalisation and augmentation, vectorised.

    The order of the samples and every random augmentation of an epoch are drawn up front from a
    numpy Generator seeded with ``(seed, epoch)``, so ``epoch(e)`` yields the same batches in every
    process, and a resumed run sees exactly the batches it would have seen.

    Args:
        split: the images and labels.
        batch_size: samples per batch (the last batch may be smaller unless ``drop_last``).
        mean: per-channel mean of ``images / 255``, e.g. `ImageData.mean`.
        std: per-channel std of ``images / 255``.
        shuffle: a new random order every epoch; otherwise the split's order.
        augment: a random crop of each image zero-padded by ``pad`` (offsets drawn per sample) and,
            if ``hflip``, a random horizontal flip per sample.
        hflip: whether augmentation flips (see `ImageData.hflip`).
        pad: crop padding in pixels.
        seed: a non-negative integer.
        drop_last: drop a last batch smaller than ``batch_size``.
        limit: use only the first ``limit`` samples of the split (a fixed subset, e.g. for BN recalibration).

    Raises:
        ValueError: a bad batch size, pad, seed, limit, or mean/std that do not match the channels.
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool,
        augment: bool,
        hflip: bool,
        pad: int = 2,
        seed: int = 0,
        drop_last: bool = False,
        limit: int | None = None,
    ) -> None:
        channels = split.images.shape[-1]
        if batch_size < 1 or pad < 0 or seed < 0 or (limit is not None and limit < 1):
            raise ValueError(
                f"need batch_size >= 1, pad >= 0, seed >= 0 and limit None or >= 1; "
                f"got batch_size={batch_size}, pad={pad}, seed={seed}, limit={limit}"
            )
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need {channels} values each, std > 0")
        self._images = _as_tensor(split.images[:limit])
        self._labels = _as_tensor(np.asarray(split.labels[:limit], dtype=np.int64))
        std_t = torch.tensor(std, dtype=torch.float32)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -torch.tensor(mean, dtype=torch.float32) / std_t
        self._batch_size, self._pad, self._seed = batch_size, pad, seed
        self._shuffle, self._augment, self._hflip, self._drop_last = shuffle, augment, hflip, drop_last

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self._labels)
        return n // self._batch_size if self._drop_last else -(-n // self._batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch, a deterministic function of ``(seed, epoch)``.

        Args:
            epoch: a non-negative integer.

        Returns:
            An iterator of (images, labels): float32 (B, C, H, W) normalised, in
            ``torch.channels_last`` memory format, and int64 (B,).

        Raises:
            ValueError: a negative epoch.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch}")
        rng = np.random.default_rng((self._seed, epoch))
        n = len(self._labels)
        order = torch.from_numpy(rng.permutation(n) if self._shuffle else np.arange(n))
        offsets = torch.from_numpy(rng.integers(0, 2 * self._pad + 1, size=(n, 2))) if self._augment else None
        flips = torch.from_numpy(rng.random(n) < 0.5) if self._augment and self._hflip else None
        return self._batches(order, offsets, flips)

    def _batches(
        self, order: torch.Tensor, offsets: torch.Tensor | None, flips: torch.Tensor | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self) * self._batch_size, self._batch_size):
            window = slice(start, start + self._batch_size)
            index = order[window]
            images = self._images[index]
            if offsets is not None:
                images = self._crop_and_flip(images, offsets[window], None if flips is None else flips[window])
            normalised = images.to(torch.float32).mul_(self._scale).add_(self._shift)
            yield normalised.permute(0, 3, 1, 2), self._labels[index]

    def _crop_and_flip(self, images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
        """Crop each (B, H, W, C) image at its (dy, dx) from the zero-padded batch, mirrored where ``flips``."""
        batch, height, width, _ = images.shape
        pad = self._pad
        padded = images.new_zeros((batch, height + 2 * pad, width + 2 * pad, images.shape[3]))
        padded[:, pad : pad + height, pad : pad + width] = images
        rows = offsets[:, :1] + torch.arange(height)
        cols = offsets[:, 1:] + torch.arange(width)
        if flips is not None:
            cols = torch.where(flips[:, None], cols.flip(1), cols)
        return padded[torch.arange(batch)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing the array's memory, or a copy where the array is read-only or not contiguous."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy())
