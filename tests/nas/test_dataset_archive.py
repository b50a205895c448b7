"""`read_dataset_file` on real uploads (digits in each format) and on hostile ones: every bad file is refused with
`DatasetFileError`, nothing is written outside its private temp dir, the temp dir is removed, and no message names
a server path.

Each test points ``tempfile`` at a sandbox (``<tmp>/tmp``) beside the upload's directory (``<tmp>/upload``) and
checks that the sandbox tree is unchanged afterwards: a member that escaped extraction, or a temp dir left behind,
would show up there.
"""

from __future__ import annotations

import gzip
import io
import resource
import shutil
import signal
import stat
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.data import load_dataset
from nas.data.archive import ArchiveLimits, DatasetFileError, DatasetFormat, read_dataset_file, write_dataset_npz
from nas.data.core import ImageData
from nas.data.idx import IDX_FILES
from tests.dataset_files import Member, digits, digits_npz, folder_members, idx_bytes, idx_members, png, zip_bytes

IMAGES = 100
"""Digits per dataset (train; a quarter as many test): enough for every class, small enough to be quick."""

_RNG = np.random.default_rng(0)
TINY_PNG = png(_RNG.integers(0, 256, (8, 8), dtype=np.uint8))


class Sandbox:
    """``root/tmp`` as the temp dir for `tempfile`, uploads in ``root/upload``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scratch = root / "tmp"
        self.uploads = root / "upload"
        self.scratch.mkdir()
        self.uploads.mkdir()

    def snapshot(self) -> set[Path]:
        return set(self.root.rglob("*"))

    def read(self, upload: Path, format: DatasetFormat | None = None, **limits: int) -> tuple[ImageData, str]:
        """`read_dataset_file`, checking that it left the sandbox as it found it."""
        before = self.snapshot()
        try:
            return read_dataset_file(upload, format, limits=ArchiveLimits(**limits))
        finally:
            assert self.snapshot() == before
            assert not any(self.scratch.iterdir())

    def refused(self, upload: Path, format: DatasetFormat | None = None, **limits: int) -> str:
        """The message `read_dataset_file` refuses `upload` with; it names no server directory."""
        with pytest.raises(DatasetFileError) as caught:
            self.read(upload, format, **limits)
        message = str(caught.value)
        for private in (str(self.scratch), str(self.uploads), "hwnas-dataset-"):
            assert private not in message
        return message

    def zip(self, members: Iterable[Member], name: str = "upload.zip") -> Path:
        path = self.uploads / name
        path.write_bytes(zip_bytes(members))
        return path


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    box = Sandbox(tmp_path)
    monkeypatch.setenv("TMPDIR", str(box.scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(box.scratch))
    return box


def two_class_folder(image: bytes = TINY_PNG, classes: tuple[str, str] = ("0", "1")) -> list[Member]:
    return [(f"{part}/{c}/{i}.png", image) for part in ("train", "test") for c in classes for i in range(2)]


def npz_bytes(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


def sorted_pairs(images: np.ndarray, labels: np.ndarray) -> list[tuple[int, bytes]]:
    return sorted((int(label), image.tobytes()) for image, label in zip(images, labels, strict=True))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` grey pixels, with one tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def digit_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return digits(IMAGES)


# Round trips.


def test_npz_loads_as_written(sandbox: Sandbox) -> None:
    x, y, x_test, y_test = digits(IMAGES)
    data, found = sandbox.read(digits_npz(sandbox.uploads / "d.npz", IMAGES))
    assert found == "npz"
    assert np.array_equal(data.train_images[..., 0], x) and np.array_equal(data.train_labels, y)
    assert np.array_equal(data.test_images[..., 0], x_test) and np.array_equal(data.test_labels, y_test)
    assert data.classes == tuple(str(i) for i in range(10)) and data.hflip is False


@pytest.mark.parametrize("top", ["", "digits/"])
def test_imagefolder_zip_loads_every_image_with_its_class(sandbox: Sandbox, top: str) -> None:
    x, y, x_test, y_test = digits(IMAGES)
    data, found = sandbox.read(sandbox.zip(folder_members(top, n=IMAGES)))
    assert found == "imagefolder"
    assert data.train_images.shape == (IMAGES, 8, 8, 1) and data.test_images.shape == (IMAGES // 4, 8, 8, 1)
    assert data.classes == tuple(str(i) for i in range(10)) and data.hflip is True
    # The loader orders images by class then file name; the pairs (label, image) are what must survive.
    assert sorted_pairs(data.train_images[..., 0], data.train_labels) == sorted_pairs(x, y)
    assert sorted_pairs(data.test_images[..., 0], data.test_labels) == sorted_pairs(x_test, y_test)


@pytest.mark.parametrize(("top", "gz"), [("", True), ("", False), ("mnist/", True), ("mnist/", False)])
def test_idx_zip_loads_in_order(sandbox: Sandbox, top: str, gz: bool) -> None:
    x, y, x_test, y_test = digits(IMAGES)
    data, found = sandbox.read(sandbox.zip(idx_members(top, gz, n=IMAGES)))
    assert found == "idx"
    assert np.array_equal(data.train_images[..., 0], x) and np.array_equal(data.train_labels, y)
    assert np.array_equal(data.test_images[..., 0], x_test) and np.array_equal(data.test_labels, y_test)
    assert data.classes == tuple(str(i) for i in range(10)) and data.hflip is True


@pytest.mark.parametrize("source", ["npz", "imagefolder"])
def test_write_dataset_npz_round_trips(sandbox: Sandbox, source: str) -> None:
    if source == "npz":
        upload = digits_npz(sandbox.uploads / "d.npz", IMAGES)
    else:
        rgb = [png(_RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)) for _ in range(8)]
        names = ("chat", "dög", "two words")
        upload = sandbox.zip((f"{p}/{c}/{i}.png", rgb[i]) for p in ("train", "test") for c in names for i in range(2))
    data, _ = sandbox.read(upload)
    written = sandbox.root / "canonical.npz"
    write_dataset_npz(data, written)
    for again in (load_dataset("npz", written), sandbox.read(written)[0]):
        for field in ("train_images", "train_labels", "test_images", "test_labels"):
            assert np.array_equal(getattr(again, field), getattr(data, field))
            assert getattr(again, field).dtype == getattr(data, field).dtype
        assert (again.classes, again.hflip, again.mean, again.std) == (data.classes, data.hflip, data.mean, data.std)


def test_format_mismatch_names_what_the_file_is(sandbox: Sandbox) -> None:
    npz = digits_npz(sandbox.uploads / "d.npz", IMAGES)
    assert "it is a .npz archive" in sandbox.refused(npz, "imagefolder")
    folder = sandbox.zip(folder_members(n=IMAGES), "f.zip")
    assert "not a zip of the four IDX files" in (message := sandbox.refused(folder, "idx"))
    assert "it is a zip of train/<class>/ and test/<class>/ images" in message
    assert "it is a zip of the four IDX files" in sandbox.refused(sandbox.zip(idx_members(n=IMAGES), "i.zip"), "npz")


# Hostile archives: unsafe members.


@pytest.mark.parametrize(
    "name", ["../evil.png", "a/../../evil", "train/0/../../../evil.png", "train\\0\\a.png", "..\\evil", "C:/evil.png"]
)
def test_unsafe_member_names_are_refused_before_extraction(sandbox: Sandbox, name: str) -> None:
    message = sandbox.refused(sandbox.zip([*two_class_folder(), (name, TINY_PNG)]))
    assert f"unsafe member name {name!r}" in message


@pytest.mark.parametrize("name", ["", ".", "./"])
def test_member_names_without_a_path_are_refused(sandbox: Sandbox, name: str) -> None:
    upload = sandbox.uploads / "nameless.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for member, data in [*two_class_folder(), ("placeholder", TINY_PNG)]:
            archive.writestr(member, data)
        archive.infolist()[-1].filename = name  # zipfile itself cannot write an empty name; it reads one
    assert f"unsafe member name {name!r}" in sandbox.refused(upload)


def test_absolute_member_is_refused(sandbox: Sandbox) -> None:
    # Inside the sandbox, so that extracting it would be seen there.
    name = str(sandbox.root / "evil.png")
    assert "unsafe member name" in sandbox.refused(sandbox.zip([*two_class_folder(), (name, TINY_PNG)]))


def test_symlink_member_is_refused(sandbox: Sandbox) -> None:
    link = zipfile.ZipInfo("train/0/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    message = sandbox.refused(sandbox.zip([*two_class_folder(), (link, b"/etc/passwd")]))
    assert "member 'train/0/link.png' is a symbolic link" in message


def _flagged_zip(sandbox: Sandbox, flag_bits: int = 0, compress_type: int | None = None) -> Path:
    path = sandbox.uploads / "flagged.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in two_class_folder():
            archive.writestr(name, data)
        info = archive.infolist()[0]  # changed in the central directory, which zipfile trusts
        info.flag_bits |= flag_bits
        if compress_type is not None:
            info.compress_type = compress_type
    return path


def test_encrypted_member_is_refused(sandbox: Sandbox) -> None:
    assert "member 'train/0/0.png' is encrypted" in sandbox.refused(_flagged_zip(sandbox, flag_bits=0x1))


@pytest.mark.parametrize(("flag_bits", "compress_type"), [(0x20, None), (0x40, None), (0, 99)])
def test_zip_features_zipfile_cannot_read_are_refused(sandbox: Sandbox, flag_bits: int, compress_type: int) -> None:
    assert "not a zip or .npz file" in sandbox.refused(_flagged_zip(sandbox, flag_bits, compress_type))


def test_member_name_flagged_utf8_that_is_not_is_refused(sandbox: Sandbox) -> None:
    upload = sandbox.zip([*two_class_folder(), ("train/0/\u00e9.png", TINY_PNG)])
    upload.write_bytes(upload.read_bytes().replace("\u00e9".encode(), b"\xff\xfe"))
    assert "not a zip or .npz file" in sandbox.refused(upload)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [(("train/0", b"x"), "Is a directory"), (("train/0/" + "a" * 300 + ".png", TINY_PNG), "File name too long")],
)
def test_members_that_cannot_be_extracted_are_refused(sandbox: Sandbox, extra: Member, reason: str) -> None:
    message = sandbox.refused(sandbox.zip([*two_class_folder(), extra]))
    assert "cannot be extracted" in message and reason in message


# Hostile archives: sizes.


def test_too_many_members_are_refused(sandbox: Sandbox) -> None:
    message = sandbox.refused(sandbox.zip(folder_members(n=IMAGES)), max_members=10)
    assert f"holds {IMAGES + IMAGES // 4} files; at most 10" in message


def test_declared_size_over_max_bytes_is_refused(sandbox: Sandbox) -> None:
    upload = sandbox.zip([*two_class_folder(), ("train/0/big.png", bytes(2 << 20))])
    assert "expands to over 1,048,576 bytes" in sandbox.refused(upload, max_bytes=1 << 20)


@pytest.fixture
def file_size_limit() -> Iterator[int]:
    """Writes past 16 MiB fail with EFBIG (instead of filling the disk) while the test runs."""
    limit = 16 << 20
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_gzip_bomb_in_an_idx_zip_stops_at_the_byte_budget(sandbox: Sandbox, file_size_limit: int) -> None:
    bomb = gzip.compress(bytes(1 << 20)) * 64  # 64 MiB of zeros in 64 gzip members, about 64 KiB
    members = [m if m[0] != "train-images-idx3-ubyte.gz" else (m[0], bomb) for m in idx_members(n=IMAGES)]
    start = time.monotonic()
    message = sandbox.refused(sandbox.zip(members), max_bytes=8 << 20)
    # Not "not valid gzip (File too large)": extraction stopped before the file reached the 16 MiB limit.
    assert "expands to over 8,388,608 bytes" in message
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("extra", [[], [("a.png", TINY_PNG)]], ids=["alone", "behind-a-small-image"])
def test_image_over_max_side_is_refused(sandbox: Sandbox, extra: list[Member]) -> None:
    big = png(_RNG.integers(0, 256, (40, 64), dtype=np.uint8))
    message = sandbox.refused(sandbox.zip([*extra, *two_class_folder(big)]), max_side=32)
    assert "is 64x40; images may be at most 32 px a side" in message


def test_images_decoding_over_max_bytes_are_refused(sandbox: Sandbox) -> None:
    # 8 images of 16x16 (about 80 bytes each as PNG) decode to 8 * 16 * 16 * 3 = 6,144 bytes as RGB.
    upload = sandbox.zip(two_class_folder(png(np.eye(16, dtype=np.uint8) * 255)))
    assert "decode to over 4,000 bytes" in sandbox.refused(upload, max_bytes=4000)


@pytest.mark.parametrize("fmt", ["npz", "idx"])
def test_arrays_over_max_side_are_refused(sandbox: Sandbox, fmt: str) -> None:
    wide = _RNG.integers(0, 256, (4, 1, 100), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1], dtype=np.uint8)
    if fmt == "npz":
        upload = sandbox.uploads / "w.npz"
        upload.write_bytes(npz_bytes(x=wide, y=labels, x_test=wide, y_test=labels))
    else:
        upload = sandbox.zip(zip(IDX_FILES, map(idx_bytes, (wide, labels, wide, labels)), strict=True))
    assert "the images are 100x1; images may be at most 32 px a side" in sandbox.refused(upload, max_side=32)


def test_decompression_bomb_header_is_refused_unread(sandbox: Sandbox) -> None:
    start = time.monotonic()
    upload = sandbox.zip(two_class_folder(png_header(50_000, 50_000)))
    message = sandbox.refused(upload, max_side=100_000, max_bytes=1 << 62)
    assert "/0/0.png is not a readable image" in message and "decompression bomb" in message
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_png_is_named_by_member_without_server_paths(sandbox: Sandbox, damage: str) -> None:
    members = folder_members(n=IMAGES)
    name, good = next(m for m in members if m[0] == "train/3/00001.png")
    bad = b"not a png at all" if damage == "garbage" else good[: len(good) // 2]
    message = sandbox.refused(sandbox.zip([(n, bad if n == name else d) for n, d in members]))
    assert "train/3/00001.png" in message and "/tmp" not in message and str(sandbox.root) not in message


def test_unreadable_images_everywhere_are_named_without_server_paths(sandbox: Sandbox) -> None:
    message = sandbox.refused(sandbox.zip(two_class_folder(b"not a png")))
    assert "test/0/0.png is not a readable image: cannot identify image file 'test/0/0.png'" in message


# Hostile archives: contents the loaders refuse.


def test_npz_with_an_object_array_is_refused_unpickled(sandbox: Sandbox) -> None:
    upload = sandbox.uploads / "o.npz"
    upload.write_bytes(npz_bytes(x=np.array([{"a": 1}], dtype=object), y=np.array([0])))
    assert "key 'x' holds Python objects" in sandbox.refused(upload)


def test_npy_header_declaring_more_than_it_holds_is_refused_unallocated(sandbox: Sandbox) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (1 << 44,)})
    upload = sandbox.zip([("x.npy", header.getvalue() + bytes(16)), ("y.npy", header.getvalue())], "h.npz")
    assert "declares a uint8 array of shape (17592186044416,)" in sandbox.refused(upload)


def test_labels_outside_the_named_classes_are_refused(sandbox: Sandbox, digit_arrays: tuple[np.ndarray, ...]) -> None:
    x, y, x_test, y_test = digit_arrays
    upload = sandbox.uploads / "l.npz"
    upload.write_bytes(npz_bytes(x=x, y=y, x_test=x_test, y_test=y_test, classes=np.array(["a", "b"])))
    assert "outside [0, 2)" in sandbox.refused(upload)


@pytest.mark.parametrize("fmt", ["npz", "idx"])
def test_huge_label_without_class_names_allocates_none(sandbox: Sandbox, fmt: str) -> None:
    images = _RNG.integers(0, 256, (2, 4, 4), dtype=np.uint8)
    if fmt == "npz":
        upload = sandbox.uploads / "h.npz"
        labels = np.array([0, 1 << 40])
        upload.write_bytes(npz_bytes(x=images, y=labels, x_test=images, y_test=labels))
    else:
        label_file = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">ii", 0, 2**31 - 1)
        files = (idx_bytes(images), label_file, idx_bytes(images), label_file)
        upload = sandbox.zip(zip(IDX_FILES, files, strict=True))
    start = time.monotonic()
    assert "at most 100,000 classes" in sandbox.refused(upload)
    assert time.monotonic() - start < 2


def test_train_and_test_class_sets_must_agree(sandbox: Sandbox) -> None:
    members = [(f"train/{c}/0.png", TINY_PNG) for c in "01"] + [(f"test/{c}/0.png", TINY_PNG) for c in "02"]
    message = sandbox.refused(sandbox.zip(members))
    assert "only in train: ['1'], only in test: ['2']" in message and "train and test" in message


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY not really", bytes(range(256)) * 4], ids=["empty", "npy", "bin"])
def test_a_file_that_is_not_a_zip_is_refused(sandbox: Sandbox, content: bytes) -> None:
    upload = sandbox.uploads / "u.bin"
    upload.write_bytes(content)
    assert "not a zip or .npz file" in sandbox.refused(upload)


def test_empty_zip_is_refused(sandbox: Sandbox) -> None:
    assert "unrecognised dataset file: it holds nothing" in sandbox.refused(sandbox.zip([]))


def test_zip_of_unrelated_files_is_refused_listing_them(sandbox: Sandbox) -> None:
    message = sandbox.refused(sandbox.zip([("readme.txt", b"hi"), ("data/table.csv", b"a,b\n1,2\n")]))
    assert "unrecognised dataset file: it holds readme.txt, data/table.csv" in message


# Any file at all.

_SAFE_NAMES = ["train/0/a.png", "train/1/b.png", "test/0/a.png", "test/1/b.png", "d/train/0/a.png", "x.npy", "y.npy"]
_SAFE_NAMES += [f"{name}.gz" for name in IDX_FILES] + list(IDX_FILES) + ["train/", "__MACOSX/._a.png", ".DS_Store"]
_HOSTILE_NAMES = ["../x", "a/../../x", "/abs", "a\\b", "C:x", "train/0", ".gz", "train/0/" + "n" * 300, "t/é/ü.png"]

_names = st.one_of(
    st.sampled_from(_SAFE_NAMES + _HOSTILE_NAMES),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=40),
)
_contents = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            TINY_PNG,
            png(_RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)),
            TINY_PNG[:40],
            png_header(30_000, 30_000),
            idx_bytes(_RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)),
            idx_bytes(np.array([0, 1, 200], dtype=np.uint8)),
            gzip.compress(idx_bytes(np.array([1, 0, 1], dtype=np.uint8))),
            gzip.compress(bytes(1 << 20)),
            npz_bytes(a=np.arange(3)),
        ]
    ),
)
_bases: list[list[Member]] = [[], two_class_folder(), idx_members(n=8), idx_members("m/", gz=False, n=8)]


@st.composite
def _uploads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["zip", "mutated", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=512))
    members = draw(st.sampled_from(_bases)) + draw(st.lists(st.tuples(_names, _contents), max_size=6))
    data = bytearray(zip_bytes(members))
    if kind == "mutated" and data:
        for where, byte in draw(
            st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8)
        ):
            data[int(where * len(data))] = byte
    return bytes(data)


@settings(max_examples=60, deadline=None)
@given(upload=_uploads(), format=st.sampled_from([None, "npz", "imagefolder", "idx"]))
def test_any_file_is_loaded_or_refused_and_leaves_nothing_behind(
    tmp_path_factory: pytest.TempPathFactory, upload: bytes, format: DatasetFormat | None
) -> None:
    box = Sandbox(tmp_path_factory.mktemp("fuzz"))
    path = box.uploads / "upload"
    path.write_bytes(upload)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(box.scratch))
        try:
            data, found = box.read(path, format, max_bytes=4 << 20, max_members=24, max_side=64)
        except DatasetFileError as err:
            assert str(box.scratch) not in str(err) and "hwnas-dataset-" not in str(err)
        else:
            assert isinstance(data, ImageData) and found in ("npz", "imagefolder", "idx")
    shutil.rmtree(box.root)
