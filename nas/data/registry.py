"""The dataset registry: `register_dataset`, `list_datasets` and `load_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nas.data.core import ImageData
from nas.registry import Registry

DatasetLoader = Callable[[Path | None, bool], ImageData]
"""``loader(root, download) -> ImageData``; ``root`` is None when the caller gave none."""

_DATASETS: Registry[DatasetLoader] = Registry("dataset")

register_dataset = _DATASETS.register
"""Decorator registering a loader ``(root: Path | None, download: bool) -> ImageData`` (ValueError if taken)."""

list_datasets = _DATASETS.names
"""Names of the registered datasets, sorted."""


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
    return _DATASETS.get(name)(None if root is None else Path(root).expanduser(), download)
