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

from nas.data import cifar, demo, idx, imagefolder, npz  # noqa: F401  (each registers its datasets)
from nas.data.core import ImageData, Split, check_labelled_images, split_dataset
from nas.data.idx import read_idx
from nas.data.loader import BatchLoader
from nas.data.places import DATA_DIR_ENV
from nas.data.registry import DatasetLoader, list_datasets, load_dataset, register_dataset

__all__ = [
    "DATA_DIR_ENV",
    "BatchLoader",
    "DatasetLoader",
    "ImageData",
    "Split",
    "check_labelled_images",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "register_dataset",
    "split_dataset",
]
