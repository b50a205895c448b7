"""Real image datasets as the files users upload: scikit-learn's 8x8 digits as .npz, ImageFolder zip, IDX zip."""

from __future__ import annotations

import gzip
import io
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from nas.data.idx import IDX_FILES

Member = tuple[str | zipfile.ZipInfo, bytes]
"""A zip member: its name (or full `ZipInfo`) and its bytes."""


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


def zip_bytes(members: Iterable[Member]) -> bytes:
    """A deflated zip of `members` (names may repeat: hostile archives do)."""
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def folder_members(top: str = "", n: int = 400) -> list[Member]:
    """The digits as ImageFolder members ``<top><part>/<label>/<i>.png``, numbered within each class in order."""
    x, y, x_test, y_test = digits(n)
    members: list[Member] = []
    for part, images, labels in (("train", x, y), ("test", x_test, y_test)):
        counts: dict[int, int] = {}
        for image, label in zip(images, labels, strict=True):
            counts[int(label)] = counts.get(int(label), 0) + 1
            members.append((f"{top}{part}/{label}/{counts[int(label)]:05d}.png", png(image)))
    return members


def digits_imagefolder_zip(path: Path, n: int = 400, top: str = "digits/") -> Path:
    """The digits as an ImageFolder zip (`folder_members`) at `path`."""
    path.write_bytes(zip_bytes(folder_members(top, n)))
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file of `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def idx_members(top: str = "", gz: bool = True, n: int = 400) -> list[Member]:
    """The digits as the four IDX files of MNIST's layout, gzipped or raw, under `top`."""
    arrays = dict(zip(IDX_FILES, digits(n), strict=True))
    return [
        (f"{top}{name}.gz", gzip.compress(idx_bytes(a))) if gz else (f"{top}{name}", idx_bytes(a))
        for name, a in arrays.items()
    ]


def digits_idx_zip(path: Path, n: int = 400) -> Path:
    """The digits as a zip of the four gzipped IDX files (`idx_members`) at `path`."""
    path.write_bytes(zip_bytes(idx_members(n=n)))
    return path
