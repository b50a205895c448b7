"""BN recalibration and evaluation of subnets (OFA's evaluation protocol)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.data import BatchLoader, ImageData, Split, load_dataset, split_dataset
from nas.supernet import MobileNetV3, OFAMobileNetV3

RECAL_BATCH = 200


def resize(x: Tensor, resolution: int) -> Tensor:
    """Resize a batch to resolution x resolution (bilinear), keeping channels-last memory format."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    out = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def recalibrate_bn(module: nn.Module, batches: Iterable[Tensor]) -> None:
    """Reset every BatchNorm's running statistics to the average over `batches` (OFA's protocol).

    Each BN normalises with its batch mean and biased batch variance while the batches run; its
    running mean/var become the batch-size-weighted average of those per-batch values. Other
    layers (dropout) stay in eval mode.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    sums: dict[int, list[Tensor]] = {}
    counts: dict[int, int] = {}

    # With momentum 1 a training-mode BN leaves exactly its batch statistics in running_mean/var
    # (the variance unbiased); reading them back is much cheaper than reducing the input again,
    # which on channels-last tensors cost more than the whole forward pass.
    def hook(bn: nn.Module, inputs: tuple[Tensor, ...], _: Tensor) -> None:
        assert isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None
        x = inputs[0]
        n, per_channel = x.shape[0], x.numel() // x.shape[1]
        mean, var = bn.running_mean * n, bn.running_var * (n * (per_channel - 1) / per_channel)
        if id(bn) in sums:
            sums[id(bn)][0] += mean
            sums[id(bn)][1] += var
        else:
            sums[id(bn)] = [mean, var]
        counts[id(bn)] = counts.get(id(bn), 0) + n

    was_training = module.training
    momenta = [bn.momentum for bn in bns]
    module.eval()
    handles = [bn.register_forward_hook(hook) for bn in bns]
    for bn in bns:
        bn.train()
        bn.momentum = 1.0
    try:
        for x in batches:
            module(x)
    finally:
        for h in handles:
            h.remove()
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        module.train(was_training)
    if not counts:
        raise ValueError("BN recalibration got no batches")
    for bn in bns:
        if id(bn) in counts and bn.running_mean is not None and bn.running_var is not None:
            mean_sum, var_sum = sums[id(bn)]
            bn.running_mean.copy_(mean_sum / counts[id(bn)])
            bn.running_var.copy_(var_sum / counts[id(bn)])


@dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy (fraction), mean cross-entropy and the number of images evaluated."""

    top1: float
    loss: float
    images: int


@lru_cache(maxsize=4)
def _cached_splits(
    dataset: str, data_dir: str | None, val_fraction: float, seed: int
) -> tuple[ImageData, dict[str, Split]]:
    data = load_dataset(dataset, data_dir)
    return data, split_dataset(data, val_fraction, seed)


def data_for(supernet: OFAMobileNetV3) -> tuple[ImageData, dict[str, Split]]:
    """The dataset and splits a supernet was trained on (from `supernet.metadata["data"]`).

    Raises:
        ValueError: the supernet carries no training-data provenance.
    """
    ref = _training_data(supernet)
    return _cached_splits(ref["dataset"], ref.get("data_dir"), ref["val_fraction"], ref["seed"])


def _training_data(supernet: OFAMobileNetV3) -> Mapping[str, Any]:
    """The supernet's record of its training data (dataset, data_dir, val_fraction, seed)."""
    ref: Mapping[str, Any] | None = supernet.metadata.get("data")
    if ref is None:
        raise ValueError("this supernet records no training data; pass data= and splits= to evaluate()")
    return ref


@dataclass(frozen=True)
class BNCalibration:
    """The images a subnet's BatchNorm statistics are recalibrated on (OFA's protocol), and how.

    The first `images` images of `split` in its fixed order, with the training augmentation (a
    random crop of the zero-padded image, and flips where the dataset allows them) drawn from
    `seed`, normalised with the dataset's mean/std, resized to the subnet's resolution, in batches
    of `RECAL_BATCH`. The same calibration gives the same statistics in every process: evaluation,
    validation and export all use it, so an exported subnet is the subnet that was measured.

    Attributes:
        data: the dataset (its mean, std and flip rule).
        split: the images, normally the training split of `data`.
        images: how many of them (at most the split's size).
        seed: the augmentation's seed.
        source: where `split` comes from, recorded in bundles: ``dataset``, ``data_dir``, ``split``,
            and the ``val_fraction`` and ``split_seed`` that carved it out of the dataset.
    """

    data: ImageData
    split: Split
    images: int
    seed: int = 0
    source: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.images < 1 or self.seed < 0:
            raise ValueError(f"BN calibration needs images >= 1 and seed >= 0, got {self.images} and {self.seed}")
        object.__setattr__(self, "images", min(self.images, len(self.split.labels)))

    @classmethod
    def of_training_data(cls, supernet: OFAMobileNetV3, images: int | None = None) -> BNCalibration:
        """The calibration of a trained supernet: its training split, as many images as its training config says.

        Args:
            supernet: a supernet whose ``metadata`` records its training data (`train_supernet` does).
            images: override the number of images (default: ``metadata["bn_recal_images"]``, else 2000).

        Raises:
            ValueError: the supernet records no training data.
        """
        ref = _training_data(supernet)
        n = images or int(supernet.metadata.get("bn_recal_images", 2000))
        return cls.of_dataset(ref["dataset"], ref.get("data_dir"), n, ref["val_fraction"], ref["seed"])

    @classmethod
    def of_dataset(
        cls, dataset: str, data_dir: str | None = None, images: int = 2000, val_fraction: float = 0.1, seed: int = 0
    ) -> BNCalibration:
        """Calibrate on the training split of a registered dataset (`nas.data.load_dataset`).

        Raises:
            KeyError: unknown dataset.
            FileNotFoundError: its files are not found.
        """
        data, splits = _cached_splits(dataset, data_dir, val_fraction, seed)
        source = {"dataset": dataset, "data_dir": data_dir, "split": "train", "val_fraction": val_fraction,
                  "split_seed": seed}  # fmt: skip
        return cls(data, splits["train"], images, 0, source)

    def record(self) -> dict[str, Any]:
        """What a bundle's arch.json says about this calibration (JSON-ready)."""
        source = dict(self.source) if self.source is not None else {"dataset": self.data.name, "split": "train"}
        return {
            **source,
            "images": self.images,
            "seed": self.seed,
            "batch_size": RECAL_BATCH,
            "augment": {"random_crop_pad": 2, "hflip": self.data.hflip},
            "resize": "bilinear",
        }

    def inputs(self, resolution: int, n: int = 4) -> Tensor:
        """The first `n` calibration images as a network input at `resolution` (no augmentation)."""
        loader = BatchLoader(
            self.split, batch_size=n, mean=self.data.mean, std=self.data.std, shuffle=False, augment=False,
            hflip=False, limit=n,
        )  # fmt: skip
        x, _ = next(iter(loader.epoch(0)))
        return resize(x, resolution).contiguous()

    def apply(self, module: nn.Module, resolution: int) -> None:
        """Recalibrate the BatchNorm statistics of `module` (a subnet run at `resolution`) in place."""
        loader = BatchLoader(
            self.split, batch_size=RECAL_BATCH, mean=self.data.mean, std=self.data.std, shuffle=False,
            augment=True, hflip=self.data.hflip, seed=self.seed, limit=self.images,
        )  # fmt: skip
        recalibrate_bn(module, (resize(x, resolution) for x, _ in loader.epoch(0)))


def calibrated_subnet(supernet: OFAMobileNetV3, arch: Mapping[str, Any], calibration: BNCalibration) -> MobileNetV3:
    """The static subnet `arch` of `supernet` (eval mode) with its BN statistics recalibrated.

    The supernet is not modified.

    Raises:
        ValueError: invalid arch.
    """
    canon = supernet.space.canonical(arch)
    subnet = supernet.extract(canon).eval()
    calibration.apply(subnet, canon["r"])
    return subnet


@torch.no_grad()
def evaluate(
    supernet: OFAMobileNetV3,
    arch: Mapping[str, Any],
    split: str = "test",
    *,
    data: ImageData | None = None,
    splits: Mapping[str, Split] | None = None,
    recalibrate: bool = True,
    recal_images: int | None = None,
    batch_size: int = 50,
) -> EvalResult:
    """Top-1 of a subnet on a split, after recalibrating its BN statistics on training images.

    The subnet is extracted (the supernet is not modified). By default the data are the ones the
    supernet was trained on (recorded by `train_supernet`).

    Args:
        supernet: the trained supernet.
        arch: the subnet; its resolution is the evaluation resolution.
        split: "train", "val" or "test".
        data: the dataset (with `splits`), if the supernet records none or to override it.
        splits: the dataset's splits (see `nas.data.split_dataset`).
        recalibrate: recalibrate BN on a fixed subset of the train split first (OFA's protocol).
        recal_images: images used for recalibration (default: the training config's, else 2000).
        batch_size: evaluation batch size (small batches keep the activations in the CPU's cache).

    Raises:
        ValueError: unknown split, invalid arch, or no data.
    """
    if data is None or splits is None:
        data, splits = data_for(supernet)
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; available: {sorted(splits)}")
    canon = supernet.space.canonical(arch)
    r = canon["r"]
    if recalibrate:
        n = recal_images or int(supernet.metadata.get("bn_recal_images", 2000))
        subnet = calibrated_subnet(supernet, canon, BNCalibration(data, splits["train"], n))
    else:
        subnet = supernet.extract(canon).eval()
    subnet.fold_batch_norms()
    return score_subnet(subnet, data, splits[split], r, batch_size)


@torch.no_grad()
def score_subnet(module: nn.Module, data: ImageData, split: Split, resolution: int, batch_size: int = 50) -> EvalResult:
    """Top-1 and mean cross-entropy of a static subnet (as it is, in eval mode) on every image of `split`.

    The images are normalised with the dataset's mean/std and resized to `resolution`, without augmentation.
    """
    module.eval()
    loader = BatchLoader(
        split, batch_size=batch_size, mean=data.mean, std=data.std, shuffle=False, augment=False, hflip=False
    )
    correct, total, loss_sum = 0, 0, 0.0
    for x, y in loader.epoch(0):
        logits = module(resize(x, resolution))
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    return EvalResult(top1=correct / total, loss=loss_sum / total, images=total)
