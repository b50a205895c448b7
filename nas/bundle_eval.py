"""Scoring a bundle the way its user runs it: ONNX Runtime on the preprocessing its arch.json declares.

Every accuracy hwnas shows beside a delivered subnet is measured here, on the bundle's own bytes,
so a number can never describe another network than the file it is attached to. Nothing here
uses torch: the images are preprocessed with numpy exactly as ``arch.json["input"]`` says
(`nas.export.RESIZE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.export import ONNX_FILE, PIXEL_SCALE, RESIZE, read_bundle_files


@dataclass(frozen=True)
class BundleScore:
    """Top-1 of a bundle on labelled images.

    Attributes:
        top1: fraction of images whose arg-max logit is the label.
        correct: how many were right.
        images: how many were scored.
    """

    top1: float
    correct: int
    images: int


def _bilinear_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (low, high) and the high one's weight per output pixel (half-pixel centres)."""
    scale = size_in / size_out
    src = np.maximum((np.arange(size_out, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (src - low).astype(np.float32)


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, H, W, C) float images to (N, size, size, C): bilinear, half-pixel centres, no antialiasing."""
    _, height, width, _ = images.shape
    if height == size and width == size:
        return images
    low, high, w = _bilinear_weights(height, size)
    rows = images[:, low] * (1 - w)[None, :, None, None] + images[:, high] * w[None, :, None, None]
    low, high, w = _bilinear_weights(width, size)
    return rows[:, :, low] * (1 - w)[None, None, :, None] + rows[:, :, high] * w[None, None, :, None]


def preprocess(images: np.ndarray, input_meta: Mapping[str, Any]) -> np.ndarray:
    """Turn (N, H, W, C) uint8 images into the network's float32 NCHW input, as a bundle declares it.

    Args:
        images: uint8 pixels, (N, H, W) or (N, H, W, C).
        input_meta: ``arch.json["input"]`` of the bundle.

    Raises:
        ValueError: the channels do not match, or the bundle declares a resize this code does not know.
    """
    if input_meta.get("resize", RESIZE) != RESIZE:
        raise ValueError(f"bundle declares resize {input_meta['resize']!r}; only {RESIZE!r} is implemented")
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != input_meta["channels"]:
        raise ValueError(f"images must be (N, H, W, {input_meta['channels']}), got shape {x.shape}")
    x = x.astype(np.float32) * np.float32(input_meta.get("pixel_scale", PIXEL_SCALE))
    if input_meta.get("mean") is not None:
        x = (x - np.asarray(input_meta["mean"], np.float32)) / np.asarray(input_meta["std"], np.float32)
    x = resize_bilinear(x, int(input_meta["size"]))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def score_bundle(bundle: str | Path, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 256) -> BundleScore:
    """Top-1 of a bundle's ONNX model (ONNX Runtime, CPU) on labelled images, after its own preprocessing.

    Args:
        bundle: a bundle directory or zip (its sha256s are verified first).
        images: uint8 (N, H, W[, C]) pixels, any size (they are resized as the bundle declares).
        labels: (N,) integer labels.
        batch_size: images per ONNX Runtime call.

    Raises:
        BundleIntegrityError: the bundle is damaged.
        ValueError: images and labels disagree in length, or the images do not fit the bundle.
    """
    import onnxruntime as ort

    labels = np.asarray(labels).reshape(-1)
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(f"need as many labels as images (at least one), got {len(images)} images, {len(labels)}")
    meta, files = read_bundle_files(bundle)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(files[ONNX_FILE], options, providers=["CPUExecutionProvider"])
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = preprocess(images[start : start + batch_size], meta["input"])
        (logits,) = session.run([meta["output"]["name"]], {meta["input"]["name"]: x})
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return BundleScore(top1=correct / len(labels), correct=correct, images=len(labels))


__all__ = ["BundleScore", "preprocess", "resize_bilinear", "score_bundle"]
