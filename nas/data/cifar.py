"""cifar10: the python batches, read through a restricted unpickler."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nas.data.core import ImageData, check_labelled_images
from nas.data.places import DATA_DIR_ENV, _describe_places, _search_dirs
from nas.data.registry import register_dataset

logger = logging.getLogger(__name__)

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
