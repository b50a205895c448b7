"""Datasets and batches, on files the tests write in the real formats, and on Debian's Fashion-MNIST when installed.

No test touches the network beyond a local HTTP server on 127.0.0.1, the real HOME or $HWNAS_DATA_DIR.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import pickle
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from nas import data
from nas.data import BatchLoader, load_dataset, read_idx, split_dataset
from nas.data import idx as data_idx
from nas.data import places as data_places

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


# --------------------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the real HOME, $HWNAS_DATA_DIR, Debian directory or the internet."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data_places, "_DEBIAN_DATASETS", tmp_path / "debian")
    dead = f"http://127.0.0.1:{closed_port()}/"
    monkeypatch.setenv("HWNAS_FASHION_MNIST_URL", dead)
    monkeypatch.setenv("HWNAS_MNIST_URL", dead)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write_idx_dataset(directory: Path, n_train: int = 12, n_test: int = 5, *, gz: bool = True) -> None:
    """The four IDX files of a tiny 10-class dataset of 6x6 images."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 6, 6), np.uint8), 0x08)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10, 0x08)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(directory, base URL) of a local HTTP server on 127.0.0.1, stopped after the test."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=served))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def md5_table(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in directory.glob("*.gz")}


def image_data(labels: np.ndarray, *, channels: int = 1) -> data.ImageData:
    """Random 8x8 images, each carrying its index in pixels (0, 0) and (0, 1); the test split is 4 images."""
    n = len(labels)
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, channels), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = np.arange(n) % 256, np.arange(n) // 256
    classes = [f"c{i}" for i in range(int(labels.max()) + 1)]
    return data.ImageData.from_arrays("toy", images, labels, images[:4], labels[:4], classes, hflip=True)


def sample_ids(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(np.int64) + 256 * images[:, 0, 1, 0].astype(np.int64)


def to_uint8(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Undo the loader's normalisation: NCHW float -> NHWC uint8."""
    nhwc = x.permute(0, 2, 3, 1) * torch.tensor(std) + torch.tensor(mean)
    return np.rint(nhwc.numpy() * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def test_registry() -> None:
    assert data.list_datasets() == ["cifar10", "demo", "fashion_mnist", "idx", "imagefolder", "mnist", "npz"]
    with pytest.raises(KeyError, match="unknown dataset 'svhn'; registered: cifar10, demo"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="already registered"):
        data.register_dataset("demo")(lambda root, download: load_dataset("demo"))


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------


def test_demo_is_sklearn_digits_at_28px() -> None:
    demo = load_dataset("demo")
    assert demo.train_images.shape == (1438, 28, 28, 1) and demo.test_images.shape == (359, 28, 28, 1)
    assert demo.train_images.dtype == np.uint8 and demo.train_labels.dtype == np.int64
    assert demo.train_images.min() == 0 and demo.train_images.max() == 255
    assert demo.classes == tuple("0123456789") and demo.num_classes == 10 and not demo.hflip
    assert (demo.channels, demo.image_size) == (1, 28)
    all_counts = np.bincount(np.concatenate([demo.train_labels, demo.test_labels]))
    assert np.all(np.abs(np.bincount(demo.test_labels) - 0.2 * all_counts) <= 1)  # stratified
    again = load_dataset("demo")
    np.testing.assert_array_equal(demo.train_images, again.train_images)
    np.testing.assert_array_equal(demo.test_labels, again.test_labels)
    flat = demo.train_images.reshape(-1) / 255
    assert demo.mean[0] == pytest.approx(flat.mean()) and demo.std[0] == pytest.approx(flat.std())


# --------------------------------------------------------------------------------------------------
# fashion_mnist, mnist (IDX)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_datasets(tmp_path: Path, gz: bool) -> None:
    write_idx_dataset(tmp_path / "idx", gz=gz)
    fm = load_dataset("fashion_mnist", tmp_path / "idx", download=False)
    assert fm.train_images.shape == (12, 6, 6, 1) and fm.test_images.shape == (5, 6, 6, 1)
    suffix = ".gz" if gz else ""
    np.testing.assert_array_equal(fm.train_images[..., 0], read_idx(tmp_path / f"idx/train-images-idx3-ubyte{suffix}"))
    np.testing.assert_array_equal(fm.test_labels, np.arange(5))
    assert fm.train_labels.dtype == np.int64 and fm.hflip and fm.classes[0] == "T-shirt/top" and fm.num_classes == 10
    assert fm.mean[0] == pytest.approx(fm.train_images.mean() / 255)
    mnist = load_dataset("mnist", str(tmp_path / "idx"), download=False)
    assert not mnist.hflip and mnist.classes == tuple("0123456789")


def test_idx_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    places = {
        "root": tmp_path / "root",
        "env": tmp_path / "env" / "fashion_mnist",
        "cache": tmp_path / "home" / ".cache" / "hwnas" / "fashion_mnist",
        "debian": tmp_path / "debian" / "fashion-mnist",
    }
    for n_train, directory in enumerate(places.values(), start=1):
        write_idx_dataset(directory, n_train=n_train)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))

    def found(root: Path | None = None) -> int:
        return len(load_dataset("fashion_mnist", root, download=False).train_labels)

    assert found(places["root"]) == 1
    assert found() == 2
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert found() == 3
    (places["cache"] / "t10k-labels-idx1-ubyte.gz").unlink()  # an incomplete directory is passed over
    assert found() == 4
    assert found(tmp_path / "empty") == 4


@pytest.mark.parametrize("use_env", [False, True])
def test_download_checks_md5_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_dir: tuple[Path, str], use_env: bool
) -> None:
    served, url = http_dir
    write_idx_dataset(served)
    monkeypatch.setitem(data_idx._IDX_SOURCES, "mnist", replace(data_idx._IDX_SOURCES["mnist"], md5=md5_table(served)))
    monkeypatch.setenv("HWNAS_MNIST_URL", url)
    if use_env:
        monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "data"))
    target = tmp_path / "data" / "mnist" if use_env else tmp_path / "home" / ".cache" / "hwnas" / "mnist"
    first = load_dataset("mnist")
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in served.iterdir())
    for name in md5_table(served):
        assert (target / name).read_bytes() == (served / name).read_bytes()
    monkeypatch.setenv("HWNAS_MNIST_URL", f"http://127.0.0.1:{closed_port()}/")
    cached = load_dataset("mnist")  # from the cache, no network
    np.testing.assert_array_equal(first.train_images, cached.train_images)


def test_download_rejects_a_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_dir: tuple[Path, str]
) -> None:
    served, url = http_dir
    write_idx_dataset(served)
    table = md5_table(served)
    monkeypatch.setitem(data_idx._IDX_SOURCES, "mnist", replace(data_idx._IDX_SOURCES["mnist"], md5=table))
    monkeypatch.setenv("HWNAS_MNIST_URL", url)
    bad = served / "t10k-images-idx3-ubyte.gz"
    good = bad.read_bytes()
    bad.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz downloaded from .* has md5 .*, expected"):
        load_dataset("mnist")
    target = tmp_path / "home" / ".cache" / "hwnas" / "mnist"
    assert sorted(p.name for p in target.iterdir()) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    bad.write_bytes(good)  # the server is fixed: the next load fetches only what is missing
    assert len(load_dataset("mnist").test_labels) == 5


def test_not_found_lists_every_place_and_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    write_idx_dataset(tmp_path / "partial")
    (tmp_path / "partial" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as offline:
        load_dataset("fashion_mnist", tmp_path / "partial")
    message = str(offline.value)
    for place in (
        f"root: {tmp_path / 'partial'} (missing train-labels-idx1-ubyte)",
        f"$HWNAS_DATA_DIR/fashion_mnist: {tmp_path / 'env' / 'fashion_mnist'} (no such directory)",
        f"cache: {tmp_path / 'home' / '.cache' / 'hwnas' / 'fashion_mnist'}",
        f"Debian datasets: {tmp_path / 'debian' / 'fashion-mnist'}",
        "Downloading from http://127.0.0.1:",
        "apt-get install dataset-fashion-mnist",
        "HWNAS_DATA_DIR",
    ):
        assert place in message
    monkeypatch.delenv(data.DATA_DIR_ENV)
    with pytest.raises(FileNotFoundError, match=r"(?s)\$HWNAS_DATA_DIR/mnist: \(not set\).*download=False"):
        load_dataset("mnist", download=False)


def test_bad_idx_files(tmp_path: Path) -> None:
    def load() -> data.ImageData:
        return load_dataset("mnist", tmp_path, download=False)

    write_idx_dataset(tmp_path, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, np.arange(11, dtype=np.uint8) % 10, 0x08)
    with pytest.raises(
        ValueError, match=r"train-images-idx3-ubyte holds 12 images but .*train-labels-idx1-ubyte holds 11"
    ):
        load()
    write_idx(labels, np.full(12, 10, dtype=np.uint8), 0x08)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: label 10 is outside \[0, 10\)"):
        load()
    write_idx(labels, np.zeros(12, dtype=np.uint8), 0x08)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 36), dtype=np.uint8), 0x08)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: expected images of shape \(N, H, W\)"):
        load()
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is not a valid gzip file"):
        load()


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_load_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_places, "_DEBIAN_DATASETS", FASHION_MNIST.parent)
    fm = load_dataset("fashion_mnist", download=False)
    assert fm.train_images.shape == (60000, 28, 28, 1) and fm.test_images.shape == (10000, 28, 28, 1)
    assert np.all(np.bincount(fm.train_labels) == 6000) and np.all(np.bincount(fm.test_labels) == 1000)
    assert fm.mean[0] == pytest.approx(0.2860, abs=1e-4) and fm.std[0] == pytest.approx(0.3530, abs=1e-4)


# --------------------------------------------------------------------------------------------------
# cifar10
# --------------------------------------------------------------------------------------------------

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(directory: Path, n: int = 4, *, bytes_keys: bool = True) -> dict[str, np.ndarray]:
    """CIFAR-10's python batches in their real layout (protocol-2 pickles of dicts), n images each."""
    directory.mkdir(parents=True, exist_ok=True)
    key: Callable[[str], str | bytes] = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    rng = np.random.default_rng(0)
    written: dict[str, np.ndarray] = {}
    for i, name in enumerate([*(f"data_batch_{b}" for b in range(1, 6)), "test_batch"]):
        written[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        batch = {
            key("batch_label"): key(f"batch {i}"),
            key("labels"): [int(v) for v in (np.arange(n) + i) % 10],
            key("data"): written[name],
            key("filenames"): [key(f"img_{i}_{j}.png") for j in range(n)],
        }
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {key("label_names"): [key(c) for c in CIFAR_CLASSES], key("num_cases_per_batch"): n, key("num_vis"): 3072}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10(tmp_path: Path, bytes_keys: bool) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py", bytes_keys=bytes_keys)
    cifar = load_dataset("cifar10", tmp_path)  # the parent of cifar-10-batches-py
    assert cifar.train_images.shape == (20, 32, 32, 3) and cifar.test_images.shape == (4, 32, 32, 3)
    assert cifar.classes == tuple(CIFAR_CLASSES) and cifar.hflip and cifar.channels == 3
    raw = written["data_batch_2"][1]  # 1024 red, then green, then blue values, each row by row
    np.testing.assert_array_equal(cifar.train_images[5], raw.reshape(3, 32, 32).transpose(1, 2, 0))
    np.testing.assert_array_equal(cifar.train_labels[:8], [0, 1, 2, 3, 1, 2, 3, 4])
    same = load_dataset("cifar10", tmp_path / "cifar-10-batches-py")
    np.testing.assert_array_equal(same.test_images, cifar.test_images)


def test_cifar10_written_by_numpy_1(tmp_path: Path) -> None:
    """The real files name numpy.core.multiarray (numpy 1); numpy 2 writes numpy._core."""
    write_cifar(tmp_path)
    batch = tmp_path / "test_batch"
    assert b"numpy._core.multiarray\n" in batch.read_bytes()
    batch.write_bytes(batch.read_bytes().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert load_dataset("cifar10", tmp_path).test_images.shape == (4, 32, 32, 3)


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_cifar10_refuses_a_malicious_pickle(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    evil = {b"data": Exploit(marker), b"labels": [0]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3 cannot be read .*refusing to unpickle posix\.system"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    # bytes through _codecs.encode are allowed in latin-1 only
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(ValueError, match=r"refusing _codecs\.encode with encoding 'rot13'"):
        load_dataset("cifar10", tmp_path)


def test_bad_cifar10(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"(?s)CIFAR-10 not found.*root: .*missing data_batch_1.*cifar-10-python"
    ):
        load_dataset("cifar10", tmp_path)
    write_cifar(tmp_path)
    batch = {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 12]}
    (tmp_path / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_4 'labels': label 12 is outside \[0, 10\)"):
        load_dataset("cifar10", tmp_path)
    batch = {b"data": np.zeros((3, 1024), np.uint8), b"labels": [0, 1, 2]}
    (tmp_path / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_4: 'data' must be uint8 of shape \(N, 3072\)"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "data_batch_4").write_bytes(pickle.dumps({b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_4: no 'data' entry"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "data_batch_4").write_bytes(b"\x80\x02truncated")
    with pytest.raises(ValueError, match="data_batch_4 cannot be read as a CIFAR-10 python batch"):
        load_dataset("cifar10", tmp_path)


# --------------------------------------------------------------------------------------------------
# imagefolder
# --------------------------------------------------------------------------------------------------


def write_folder(root: Path, counts: dict[str, tuple[int, int]], *, size: int = 5, mode: str = "L") -> None:
    """root/{train,test}/<class>/<i>.png; images of class k have the value 40 * (k + 1)."""
    for k, (name, (n_train, n_test)) in enumerate(sorted(counts.items())):
        for part, n in (("train", n_train), ("test", n_test)):
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new(mode, (size, size), 40 * (k + 1) if mode == "L" else (40 * (k + 1),) * 3).save(
                    root / part / name / f"{i}.png"
                )


def test_imagefolder(tmp_path: Path) -> None:
    write_folder(tmp_path, {"dog": (3, 1), "cat": (2, 2)})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    folder = load_dataset("imagefolder", tmp_path)
    assert folder.classes == ("cat", "dog") and folder.hflip
    assert folder.train_images.shape == (5, 5, 5, 1) and folder.test_images.shape == (3, 5, 5, 1)
    np.testing.assert_array_equal(folder.train_labels, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(folder.train_images[:, 0, 0, 0], [40, 40, 80, 80, 80])
    Image.new("RGB", (5, 5), (1, 2, 3)).save(tmp_path / "test" / "dog" / "colour.bmp")
    rgb = load_dataset("imagefolder", tmp_path)  # one colour image makes all RGB
    assert rgb.channels == 3 and rgb.test_images.shape == (4, 5, 5, 3)
    np.testing.assert_array_equal(rgb.train_images[0, 0, 0], [40, 40, 40])


def test_bad_imagefolder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset 'imagefolder' needs root"):
        load_dataset("imagefolder")
    with pytest.raises(FileNotFoundError, match="train is not a directory"):
        load_dataset("imagefolder", tmp_path)
    write_folder(tmp_path, {"cat": (2, 1), "dog": (2, 1)})
    (tmp_path / "test" / "emu").mkdir()
    with pytest.raises(ValueError, match=r"same class directories; only in train: \[\], only in test: \['emu'\]"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "test" / "emu").rmdir()
    Image.new("L", (6, 5)).save(tmp_path / "train" / "dog" / "wide.png")
    with pytest.raises(ValueError, match=r"dog/wide\.png is 6x5 but .*cat/0\.png is 5x5"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "train" / "dog" / "wide.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"wide\.png is not a readable image"):
        load_dataset("imagefolder", tmp_path)


# --------------------------------------------------------------------------------------------------
# npz
# --------------------------------------------------------------------------------------------------


def test_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (6, 4, 4), np.uint8), np.array([0, 1, 2, 0, 1, 2])
    np.savez(
        tmp_path / "full.npz", x=x, y=y, x_test=x[:2], y_test=y[:2], classes=np.array(["a", "b", "c"]), hflip=False
    )
    full = load_dataset("npz", tmp_path / "full.npz")
    assert full.train_images.shape == (6, 4, 4, 1) and full.classes == ("a", "b", "c") and not full.hflip
    np.testing.assert_array_equal(full.test_images[..., 0], x[:2])

    x = rng.integers(0, 256, (60, 4, 4, 3), np.uint8)
    np.savez(tmp_path / "carve.npz", x=x, y=np.arange(60) % 3)
    carved = load_dataset("npz", tmp_path / "carve.npz")
    assert carved.train_images.shape == (50, 4, 4, 3) and carved.classes == ("0", "1", "2") and carved.hflip
    np.testing.assert_array_equal(np.bincount(carved.test_labels), [4, 3, 3])  # 10 of 60, stratified
    np.testing.assert_array_equal(carved.test_images, load_dataset("npz", tmp_path / "carve.npz").test_images)
    every = np.concatenate([carved.train_images, carved.test_images])
    assert len(np.unique(every.reshape(60, -1), axis=0)) == 60


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 4, 4), np.float32), "y": np.zeros(3, int)}, r"'x' must be uint8 of shape"),
        ({"x": np.zeros((3, 4, 4), np.uint8)}, r"must hold x and y.*it holds \['x'\]"),
        (
            {"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(3), "x_test": np.zeros((1, 4, 4), np.uint8)},
            "x_test with y_test",
        ),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(3)}, r"'y' must be a 1-D array of integer labels"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(2, int)}, r"'x' holds 3 images but .*'y' holds 2 labels"),
        (
            {"x": np.zeros((6, 4, 4), np.uint8), "y": np.arange(6), "classes": np.array(["a", "b"])},
            r"'y': label \d is outside \[0, 2\)",
        ),
        (
            {"x": np.zeros((6, 4, 4), np.uint8), "y": np.arange(6), "classes": np.array([1, 2])},
            r"'classes' must be a 1-D array of str",
        ),
        (
            {"x": np.zeros((6, 4, 4), np.uint8), "y": np.arange(6), "classes": np.array(["a", 1], dtype=object)},
            r"key 'classes' holds Python objects",
        ),
        (
            {"x": np.zeros((6, 4, 4, 2), np.uint8), "y": np.arange(6)},
            r"'x': expected uint8 images of shape \(N, H, W, C\) with C 1 or 3",
        ),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.arange(2)}, r"too few images \(2\) to hold out 1/6"),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        load_dataset("npz", tmp_path / "bad.npz")


def test_npz_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.npz: no such \.npz file"):
        load_dataset("npz", tmp_path / "missing.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="holds a single array"):
        load_dataset("npz", tmp_path / "single.npy")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.npz is not a readable \.npz file"):
        load_dataset("npz", tmp_path / "junk.npz")


# --------------------------------------------------------------------------------------------------
# ImageData and split_dataset
# --------------------------------------------------------------------------------------------------


def test_image_data_checks_its_invariants() -> None:
    toy = image_data(np.arange(20) % 4)
    with pytest.raises(ValueError, match="train_labels must be int64"):
        replace(toy, train_labels=toy.train_labels.astype(np.int32))
    with pytest.raises(ValueError, match=r"test images are \(4, 4, 1\)"):
        replace(toy, test_images=toy.test_images[:, :4, :4])
    with pytest.raises(ValueError, match="one value per channel"):
        replace(toy, mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="channel 0 of the training images is constant"):
        data.ImageData.from_arrays(
            "flat",
            np.zeros((3, 2, 2), np.uint8),
            np.zeros(3, int),
            np.zeros((1, 2, 2), np.uint8),
            np.zeros(1, int),
            ["a"],
            hflip=False,
        )


def test_split_dataset() -> None:
    labels = np.repeat(np.arange(3), [100, 60, 40])
    toy = image_data(labels)
    splits = split_dataset(toy, val_fraction=0.15, seed=3)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert (len(train.labels), len(val.labels)) == (170, 30)
    np.testing.assert_array_equal(np.bincount(val.labels), [15, 9, 6])  # stratified
    train_ids, val_ids = sample_ids(train.images), sample_ids(val.images)
    assert not set(train_ids) & set(val_ids) and len(set(train_ids) | set(val_ids)) == 200
    np.testing.assert_array_equal(labels[train_ids], train.labels)
    assert test.images is toy.test_images and test.labels is toy.test_labels
    assert not np.all(np.diff(train_ids) > 0)  # a seeded order, not the original one
    again = split_dataset(toy, val_fraction=0.15, seed=3)
    np.testing.assert_array_equal(sample_ids(again["val"].images), val_ids)
    assert set(sample_ids(split_dataset(toy, val_fraction=0.15, seed=4)["val"].images)) != set(val_ids)
    assert set(val_ids) < set(sample_ids(split_dataset(toy, val_fraction=0.3, seed=3)["val"].images))
    assert len(split_dataset(toy, val_fraction=0.0)["val"].labels) == 0
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
        split_dataset(toy, val_fraction=1.0)


# --------------------------------------------------------------------------------------------------
# BatchLoader
# --------------------------------------------------------------------------------------------------


def loader(split: data.Split, toy: data.ImageData, **kwargs: Any) -> BatchLoader:
    options: dict[str, Any] = {"batch_size": 16, "shuffle": True, "augment": True, "hflip": True} | kwargs
    return BatchLoader(split, mean=toy.mean, std=toy.std, **options)


@pytest.mark.parametrize("channels", [1, 3])
def test_batches_shape_dtype_layout(channels: int) -> None:
    toy = image_data(np.arange(40) % 5, channels=channels)
    split = data.Split(toy.train_images, toy.train_labels)
    batches = list(loader(split, toy).epoch(0))
    assert [len(y) for _, y in batches] == [16, 16, 8]
    x, y = batches[0]
    assert x.shape == (16, channels, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_batches_are_normalised_and_in_order_without_shuffle() -> None:
    toy = image_data(np.arange(50) % 5, channels=3)
    split = data.Split(toy.train_images, toy.train_labels)
    batches = list(loader(split, toy, shuffle=False, augment=False).epoch(7))
    x = torch.cat([b[0] for b in batches])
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(to_uint8(x, toy.mean, toy.std), toy.train_images)
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), toy.train_labels)


def test_batches_depend_on_seed_and_epoch_only() -> None:
    toy = image_data(np.arange(40) % 4)
    split = data.Split(toy.train_images, toy.train_labels)

    def run(seed: int, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(loader(split, toy, seed=seed).epoch(epoch))

    first, again = run(1, 3), run(1, 3)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(first[0][0], run(1, 4)[0][0])
    assert not torch.equal(first[0][0], run(2, 3)[0][0])
    with pytest.raises(ValueError, match="epoch must be a non-negative integer"):
        loader(split, toy).epoch(-1)


def test_augmentation_keeps_labels_aligned() -> None:
    labels = np.arange(64) % 4
    images = np.repeat((30 * (labels + 1)).astype(np.uint8), 10 * 10).reshape(64, 10, 10, 1)
    toy = data.ImageData.from_arrays("const", images, labels, images[:4], labels[:4], list("abcd"), hflip=True)
    split = data.Split(toy.train_images, toy.train_labels)
    for x, y in loader(split, toy, pad=3).epoch(0):
        pixels = to_uint8(x, toy.mean, toy.std)
        value = (30 * (y.numpy() + 1)).astype(np.uint8)
        np.testing.assert_array_equal(pixels[:, 5, 5, 0], value)  # the centre is never padding
        assert np.all((pixels[..., 0] == 0) | (pixels[..., 0] == value[:, None, None]))


def test_padded_crop_and_flip_bounds() -> None:
    pad, side = 2, 6
    pattern = np.arange(1, side * side + 1, dtype=np.uint8).reshape(side, side)  # distinct non-zero values
    images = np.repeat(pattern[None, :, :, None], 200, axis=0)
    labels = np.arange(200) % 2
    toy = data.ImageData.from_arrays("pattern", images, labels, images[:2], labels[:2], ["a", "b"], hflip=True)
    split = data.Split(toy.train_images, toy.train_labels)
    padded = np.pad(pattern, pad)
    windows = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            window = padded[dy : dy + side, dx : dx + side]
            windows[(dy, dx, False)], windows[(dy, dx, True)] = window, np.fliplr(window)

    def seen(hflip: bool) -> set[tuple[int, int, bool]]:
        keys = set()
        for x, _ in loader(split, toy, pad=pad, batch_size=64, hflip=hflip).epoch(0):
            for crop in to_uint8(x, toy.mean, toy.std)[..., 0]:
                match = [key for key, window in windows.items() if np.array_equal(crop, window)]
                assert len(match) == 1, "not a padded crop of the image"
                keys.add(match[0])
        return keys

    flipping = seen(hflip=True)
    corners = {(0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad)}
    assert corners <= {(dy, dx) for dy, dx, _ in flipping} and {flip for *_, flip in flipping} == {False, True}
    assert {flip for *_, flip in seen(hflip=False)} == {False}


def test_len_drop_last_and_limit() -> None:
    toy = image_data(np.arange(10) % 2)
    split = data.Split(toy.train_images, toy.train_labels)
    kept = loader(split, toy, batch_size=4)
    dropped = loader(split, toy, batch_size=4, drop_last=True)
    assert len(kept) == 3 and [len(y) for _, y in kept.epoch(0)] == [4, 4, 2]
    assert len(dropped) == 2 and [len(y) for _, y in dropped.epoch(0)] == [4, 4]
    limited = loader(split, toy, batch_size=2, limit=5, augment=False)
    assert len(limited) == 3
    for epoch in range(3):
        ids = np.concatenate([sample_ids(to_uint8(x, toy.mean, toy.std)) for x, _ in limited.epoch(epoch)])
        assert sorted(ids) == [0, 1, 2, 3, 4]
    assert len(loader(split, toy, limit=100)) == 1
    with pytest.raises(ValueError, match="batch_size >= 1"):
        loader(split, toy, batch_size=0)
    with pytest.raises(ValueError, match=r"need 1 values each"):
        BatchLoader(split, batch_size=4, mean=(0.5, 0.5), std=(0.2, 0.2), shuffle=False, augment=False, hflip=False)
