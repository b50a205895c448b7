"""IDX reading on files the tests write, and on Debian's Fashion-MNIST when installed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from nas.data import read_idx

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, type_code: int) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_uint8_and_int32(tmp_path: Path, suffix: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / f"images{suffix}", images, 0x08)
    np.testing.assert_array_equal(read_idx(tmp_path / f"images{suffix}"), images)
    values = np.array([-5, 0, 70000], dtype=np.int32)
    write_idx(tmp_path / f"values{suffix}", values, 0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / f"values{suffix}"), values)


def test_bad_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "junk")
    write_idx(tmp_path / "short", np.zeros((4, 4), dtype=np.uint8), 0x08)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="declares"):
        read_idx(tmp_path / "short")


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist() -> None:
    x = read_idx(FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    y = read_idx(FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))
