"""IDX files (`read_idx`) and the datasets stored in them: fashion_mnist and mnist, downloaded when absent."""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nas.data.core import ImageData, check_labelled_images, numbered_classes
from nas.data.download import _download
from nas.data.places import DATA_DIR_ENV, _describe_places, _download_dir, _require_root, _search_dirs
from nas.data.registry import register_dataset

logger = logging.getLogger(__name__)

_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


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


@register_dataset("idx")
def _load_idx_directory(root: Path | None, download: bool) -> ImageData:
    """The four IDX files of MNIST's layout (each raw or ``.gz``) in the directory ``root``.

    Classes are named "0", "1", ... up to the largest label; horizontal flips are used as
    augmentation (store the data as ``npz`` with ``hflip=False`` where a flip changes the class).
    ``download`` is ignored.
    """
    directory = _require_root("idx", root, "a directory holding the four IDX files")
    files = _find_idx_files([("root", directory)])
    if files is None:
        found = _missing_idx_files(directory) if directory.is_dir() else "no such directory"
        raise FileNotFoundError(f"{directory}: {found}; the idx dataset needs {', '.join(IDX_FILES)}")
    labels = [read_idx(files[stem]) for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")]
    if any(part.dtype.kind not in "iu" or part.size == 0 for part in labels):
        raise ValueError(f"{directory}: the label files must hold integer labels")
    classes = numbered_classes(max(int(part.max()) for part in labels) + 1, str(directory))
    train = _read_idx_pair(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"], len(classes))
    test = _read_idx_pair(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"], len(classes))
    return ImageData.from_arrays("idx", *train, *test, classes, hflip=True)


def _idx_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _find_idx_files(places: Sequence[tuple[str, Path | None]]) -> dict[str, Path] | None:
    """The four files, from the first directory that holds them all."""
    for _, directory in places:
        if directory is not None:
            found = {stem: path for stem in IDX_FILES if (path := _idx_file(directory, stem)) is not None}
            if len(found) == len(IDX_FILES):
                return found
    return None


def _missing_idx_files(directory: Path) -> str:
    return "missing " + ", ".join(stem for stem in IDX_FILES if _idx_file(directory, stem) is None)


def _idx_not_found(name: str, source: _IdxSource, looked: str, target: Path, failure: str) -> str:
    ways = [f"`apt-get install {source.apt_package}`"] if source.apt_package else []
    ways += [
        f"load_dataset({name!r}, download=True) with network access (saves to {target})",
        f"put the four files in a directory passed as root, or in $DIR/{name} with {DATA_DIR_ENV}=$DIR set",
    ]
    return (
        f"{source.title} not found: no directory holds all of {', '.join(IDX_FILES)} (each .gz or raw). "
        f"Looked in, in this order:\n{looked}\n{failure}.\nTo get it: {'; or '.join(ways)}."
    )


def _base_url(source: _IdxSource) -> str:
    return os.environ.get(source.url_env) or source.url


def _download_idx(source: _IdxSource, target: Path) -> None:
    base = _base_url(source).rstrip("/")
    for stem in IDX_FILES:
        if _idx_file(target, stem) is None:
            _download(f"{base}/{stem}.gz", target / f"{stem}.gz", source.md5[f"{stem}.gz"])


def _read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected images of shape (N, H, W), got shape {images.shape}")
    images = images[..., np.newaxis]
    check_labelled_images(images, labels, num_classes, str(images_path), str(labels_path))
    return images, labels
