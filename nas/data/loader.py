"""Fast in-memory batches for training: `BatchLoader`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from nas.data.core import Split


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
        pad: crop padding in pixels; default 2, or an eighth of the image side for images under
            16 px (2 px would shift an 8 px digit by a quarter of its width).
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
        pad: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
        limit: int | None = None,
    ) -> None:
        channels = split.images.shape[-1]
        pad = _default_pad(split.images.shape[1]) if pad is None else pad
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


def _default_pad(side: int) -> int:
    """The crop padding for images of `side` pixels: 2, or side / 8 (at least 1) under 16 px."""
    return 2 if side >= 16 else max(1, side // 8)
