"""Real image datasets as the files users upload: scikit-learn's 8x8 digits as .npz, ImageFolder zip, IDX zip."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def digits(n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first `n` digits as train and the next `n // 4` as test: uint8 (N, 8, 8) images and labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.rint(data.images * (255.0 / 16.0)).astype(np.uint8)
    labels = data.target.astype(np.int64)
    test = slice(n, n + n // 4)
    return images[:n], labels[:n], images[test], labels[test]


def digits_npz(path: Path, n: int = 400) -> Path:
    """The digits as a .npz with x, y, x_test, y_test and hflip False."""
    x, y, x_test, y_test = digits(n)
    with path.open("wb") as out:  # a path without .npz would get one appended
        np.savez(out, x=x, y=y, x_test=x_test, y_test=y_test, hflip=np.array(False))
    return path


def png(image: np.ndarray) -> bytes:
    """A grey image as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def digits_imagefolder_zip(path: Path, n: int = 400, top: str = "digits/") -> Path:
    """The digits as ``<top>train/<label>/<i>.png`` and ``<top>test/<label>/<i>.png`` in a zip."""
    x, y, x_test, y_test = digits(n)
    with zipfile.ZipFile(path, "w") as archive:
        for part, images, labels in (("train", x, y), ("test", x_test, y_test)):
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                archive.writestr(f"{top}{part}/{label}/{i:05d}.png", png(image))
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file of `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def digits_idx_zip(path: Path, n: int = 400) -> Path:
    """The digits as the four gzipped IDX files of MNIST's layout in a zip."""
    x, y, x_test, y_test = digits(n)
    files = {"train-images-idx3-ubyte": x, "train-labels-idx1-ubyte": y, "t10k-images-idx3-ubyte": x_test,
             "t10k-labels-idx1-ubyte": y_test}  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in files.items():
            archive.writestr(f"{name}.gz", gzip.compress(idx_bytes(array)))
    return path
