"""imagefolder: images in ``root/{train,test}/<class>/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from nas.data.core import ImageData
from nas.data.places import _require_root
from nas.data.registry import register_dataset

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


@register_dataset("imagefolder")
def _load_imagefolder(root: Path | None, download: bool) -> ImageData:
    """``root/train/<class>/*`` and ``root/test/<class>/*`` images (.png, .jpg, .jpeg, .bmp).

    Classes are the sorted sub-directory names, the same in both. Images are grey ("L") if all
    of them are, else RGB, and must all have one size. ``download`` is ignored.
    """
    root = _require_root("imagefolder", root, "a directory holding train/<class>/ and test/<class>/")
    classes = _folder_classes(root)
    train_paths, train_labels = _folder_images(root / "train", classes, every_class=True)
    test_paths, test_labels = _folder_images(root / "test", classes, every_class=False)
    if not test_paths:
        raise ValueError(f"{root / 'test'} holds no {'/'.join(sorted(IMAGE_SUFFIXES))} images")
    mode = _folder_mode([*train_paths, *test_paths])
    train_images, test_images = _read_images(train_paths, mode), _read_images(test_paths, mode)
    return ImageData.from_arrays(
        "imagefolder", train_images, train_labels, test_images, test_labels, classes, hflip=True
    )


def _folder_classes(root: Path) -> list[str]:
    found: dict[str, set[str]] = {}
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise FileNotFoundError(
                f"{root / part} is not a directory: imagefolder needs {root}/train/<class>/ and {root}/test/<class>/"
            )
        found[part] = {p.name for p in (root / part).iterdir() if p.is_dir() and not p.name.startswith(".")}
    if found["train"] != found["test"]:
        only_train, only_test = sorted(found["train"] - found["test"]), sorted(found["test"] - found["train"])
        raise ValueError(
            f"{root / 'train'} and {root / 'test'} must hold the same class directories; "
            f"only in train: {only_train}, only in test: {only_test}"
        )
    if not found["train"]:
        raise ValueError(f"{root / 'train'} holds no class directories")
    return sorted(found["train"])


def _folder_images(part: Path, classes: Sequence[str], *, every_class: bool) -> tuple[list[Path], np.ndarray]:
    """The image files of ``part/<class>/`` and their labels; ``every_class``: each must hold one."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (part / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files and every_class:
            raise ValueError(f"{part / name} holds no {'/'.join(sorted(IMAGE_SUFFIXES))} images")
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, dtype=np.int64)


def _folder_mode(paths: Sequence[Path]) -> str:
    """Grey ("L") if every image is, else "RGB"; checks that all have the size of the first."""
    first: tuple[Path, tuple[int, int]] | None = None
    grey = True
    for path in paths:
        try:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
        except OSError as err:
            raise ValueError(f"{path} is not a readable image: {err}") from err
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise ValueError(
                f"{path} is {size[0]}x{size[1]} but {first[0]} is {first[1][0]}x{first[1][1]}: "
                f"all images must have one size (resize them first)"
            )
        grey = grey and mode in _GREY_MODES
    return "L" if grey else "RGB"


def _read_images(paths: Sequence[Path], mode: str) -> np.ndarray:
    images = []
    for path in paths:
        try:
            with Image.open(path) as img:
                images.append(np.asarray(img.convert(mode)))
        except OSError as err:
            raise ValueError(f"{path} is not a readable image: {err}") from err
    return np.stack(images)
