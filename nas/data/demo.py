"""demo: scikit-learn's bundled digits, resized to 28x28; needs no files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from nas.data.core import ImageData, _stratified_holdout
from nas.data.registry import register_dataset

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
