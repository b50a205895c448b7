"""The in-memory dataset (`ImageData`), its splits (`Split`, `split_dataset`) and their checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_STATS_CHUNK = 4096


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


MAX_CLASSES = 100_000
"""The most classes a dataset may have (labels are class indices; a stray huge label must not allocate names)."""


def numbered_classes(num_classes: int, source: str) -> list[str]:
    """Class names "0", "1", ... for datasets that name none.

    Raises:
        ValueError: `num_classes` is over `MAX_CLASSES` (naming `source`).
    """
    if num_classes > MAX_CLASSES:
        raise ValueError(f"{source}: the largest label is {num_classes - 1}; at most {MAX_CLASSES:,} classes")
    return [str(i) for i in range(num_classes)]


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
