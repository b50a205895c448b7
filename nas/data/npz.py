"""npz: a ``.npz`` file holding x, y [, x_test, y_test, classes, hflip]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nas.data.core import (
    ImageData,
    _stratified_holdout,
    _with_channel_axis,
    check_labelled_images,
    numbered_classes,
)
from nas.data.places import _require_root
from nas.data.registry import register_dataset

_NPZ_TEST_FRACTION = 1 / 6


@register_dataset("npz")
def _load_npz(root: Path | None, download: bool) -> ImageData:
    """A ``.npz`` file (read with ``allow_pickle=False``) holding these arrays.

    ``x``: uint8 (N, H, W) or (N, H, W, C) with C 1 or 3; ``y``: (N,) integer labels;
    optional ``x_test`` and ``y_test`` (together; without them a stratified 1/6 of ``x`` is held out,
    the same every time); optional ``classes``: str array of class names (default "0", "1", ...);
    optional ``hflip``: boolean scalar, whether flips preserve the label (default True).
    ``download`` is ignored.
    """
    path = _require_root("npz", root, "the path of a .npz file holding arrays x and y")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npz file: {err}") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array; expected a .npz archive with arrays x and y (np.savez)")
    with archive:
        arrays = {key: _npz_array(archive, key, path) for key in archive.files}
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing or ("x_test" in arrays) != ("y_test" in arrays):
        raise ValueError(f"{path} must hold x and y, and x_test with y_test or neither; it holds {sorted(arrays)}")
    x, y = _npz_images(arrays["x"], "x", path), _npz_labels(arrays["y"], "y", path)
    if "x_test" in arrays:
        x_test, y_test = _npz_images(arrays["x_test"], "x_test", path), _npz_labels(arrays["y_test"], "y_test", path)
    else:
        check_labelled_images(x, y, int(y.max(initial=0)) + 1, f"{path} 'x'", f"{path} 'y'")
        train, test = _stratified_holdout(y, _NPZ_TEST_FRACTION, seed=0)
        if len(test) == 0:
            raise ValueError(f"{path}: 'x' holds too few images ({len(x)}) to hold out 1/6; add x_test and y_test")
        x, y, x_test, y_test = x[train], y[train], x[test], y[test]
    classes = _npz_classes(arrays.get("classes"), max(int(y.max(initial=0)), int(y_test.max(initial=0))) + 1, path)
    check_labelled_images(x, y, len(classes), f"{path} 'x'", f"{path} 'y'")
    check_labelled_images(x_test, y_test, len(classes), f"{path} 'x_test'", f"{path} 'y_test'")
    hflip = _npz_flag(arrays.get("hflip"), path)
    return ImageData.from_arrays("npz", x, y, x_test, y_test, classes, hflip=hflip)


def _npz_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as err:
        raise ValueError(f"{path}: key {key!r} holds Python objects, which are not loaded; store plain arrays") from err


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"{path}: {key!r} must be uint8 of shape (N, H, W) or (N, H, W, C), got {x.dtype} {x.shape}")
    return _with_channel_axis(x)


def _npz_labels(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: {key!r} must be a 1-D array of integer labels, got {y.dtype} {y.shape}")
    return y


def _npz_classes(names: np.ndarray | None, num_labels: int, path: Path) -> list[str]:
    if names is None:
        return numbered_classes(num_labels, f"{path} 'y'")
    if names.ndim != 1 or names.dtype.kind != "U" or len(names) == 0:
        raise ValueError(f"{path}: 'classes' must be a 1-D array of str, got {names.dtype} {names.shape}")
    return [str(n) for n in names]


def _npz_flag(flag: np.ndarray | None, path: Path) -> bool:
    if flag is None:
        return True
    if flag.shape != () or flag.dtype != np.bool_:
        raise ValueError(f"{path}: 'hflip' must be a boolean scalar, got {flag.dtype} {flag.shape}")
    return bool(flag)
