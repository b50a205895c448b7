"""Datasets from untrusted files: a ``.npz``, an ImageFolder zip or a zip of IDX files, read within limits.

`read_dataset_file` is what a service runs on an upload before accepting it: it checks the archive's
directory (member names, links, sizes) before extracting a byte, extracts into a private directory,
and loads the result with the registered loaders (``npz``, ``imagefolder``, ``idx``), so an upload is
held to exactly the checks a dataset on disk gets. `write_dataset_npz` stores the result in the one
form workers read back (``load_dataset("npz", path)``).

Error messages name members of the archive, never the server's directories.
"""

from __future__ import annotations

import gzip
import math
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from PIL import Image

from nas.data.core import ImageData
from nas.data.idx import IDX_FILES
from nas.data.imagefolder import IMAGE_SUFFIXES
from nas.data.registry import load_dataset

DatasetFormat = Literal["npz", "imagefolder", "idx"]


@dataclass(frozen=True)
class ArchiveLimits:
    """What an uploaded dataset may hold.

    Attributes:
        max_bytes: the members' total size once uncompressed (and the decoded images' size).
        max_members: files in the archive.
        max_side: the largest image height or width, in pixels.
    """

    max_bytes: int = 1 << 30
    max_members: int = 200_000
    max_side: int = 1024


class DatasetFileError(ValueError):
    """The file is not an acceptable dataset; the message says why in the archive's own terms."""


def read_dataset_file(
    path: Path, format: DatasetFormat | None = None, *, limits: ArchiveLimits = ArchiveLimits()
) -> tuple[ImageData, DatasetFormat]:
    """Validate and load an uploaded dataset file.

    Args:
        path: the uploaded file: a ``.npz`` (arrays ``x``, ``y`` [, ``x_test``, ``y_test``,
            ``classes``, ``hflip``]), or a zip holding ``train/<class>/`` and ``test/<class>/``
            images, or a zip holding the four IDX files (``train-images-idx3-ubyte`` ... , each raw
            or ``.gz``); a zip's content may sit in one top-level folder.
        format: what the file is; None detects it from the zip's members.
        limits: sizes the file may not exceed.

    Returns:
        The dataset and the format it was read as.

    Raises:
        DatasetFileError: not a zip, an unsafe member (absolute path, ``..``, link, encrypted), over
            a limit, not the format asked for, or the loader's checks failed.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = _checked_members(archive, limits)
            found = _detect(members)
            if format is not None and found != format:
                raise DatasetFileError(f"the file is not a {_DESCRIPTIONS[format]}: {_describe(members, found)}")
            if found is None:
                raise DatasetFileError(f"unrecognised dataset file: {_describe(members, None)}")
            if found == "npz":
                _check_npy_headers(archive, members)
                data = _load_quietly("npz", path, path.parent, "the .npz file")
            else:
                with tempfile.TemporaryDirectory(prefix="hwnas-dataset-") as scratch:
                    root = _extract(archive, members, Path(scratch), limits, gunzip=found == "idx")
                    if found == "imagefolder":
                        _check_images(root, limits)
                    data = _load_quietly(found, root, Path(scratch), "the zip")
    # NotImplementedError: a compression method or flag zipfile cannot read; UnicodeDecodeError: a name
    # flagged UTF-8 that is not.
    except (zipfile.BadZipFile, NotImplementedError, UnicodeDecodeError) as err:
        raise DatasetFileError(f"not a zip or .npz file ({err})") from None
    height, width = data.train_images.shape[1:3]
    if max(height, width) > limits.max_side:
        raise DatasetFileError(f"the images are {width}x{height}; images may be at most {limits.max_side} px a side")
    return data, found


def write_dataset_npz(data: ImageData, path: Path) -> None:
    """Write `data` as the ``.npz`` that ``load_dataset("npz", path)`` reads back unchanged (splits included)."""
    with path.open("wb") as out:
        np.savez(
            out, x=data.train_images, y=data.train_labels, x_test=data.test_images, y_test=data.test_labels,
            classes=np.array(data.classes, dtype=str), hflip=np.array(data.hflip),
        )  # fmt: skip


_DESCRIPTIONS: dict[DatasetFormat, str] = {
    "npz": ".npz archive of arrays x and y",
    "imagefolder": "zip of train/<class>/ and test/<class>/ images",
    "idx": "zip of the four IDX files (" + ", ".join(IDX_FILES) + ", each raw or .gz)",
}


def _checked_members(archive: zipfile.ZipFile, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """The archive's files, refused before extraction if any name, kind or size is unsafe."""
    infos = archive.infolist()
    total = 0
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if not parts or "\x00" in name or "\\" in name or name.startswith("/") or ".." in parts or ":" in parts[0]:
            raise DatasetFileError(f"unsafe member name {name!r}: names must be relative paths without '..'")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetFileError(f"member {name!r} is a symbolic link; links are not accepted")
        if info.flag_bits & 0x1:
            raise DatasetFileError(f"member {name!r} is encrypted")
        total += info.file_size
        if total > limits.max_bytes:
            raise DatasetFileError(f"the archive expands to over {limits.max_bytes:,} bytes")
    files = [info for info in infos if not info.is_dir()]  # after the names: is_dir fails on an empty one
    if len(files) > limits.max_members:
        raise DatasetFileError(f"the archive holds {len(files):,} files; at most {limits.max_members:,} are accepted")
    return files


def _check_npy_headers(archive: zipfile.ZipFile, members: Sequence[zipfile.ZipInfo]) -> None:
    """Refuse a ``.npy`` member whose header declares more data than it holds (numpy allocates it first)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    for info in members:
        with archive.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
                if version not in readers:
                    raise ValueError(f".npy format version {version} is not accepted (1.0 and 2.0 are)")
                shape, _, dtype = readers[version](member)
            except ValueError as err:
                raise DatasetFileError(f"member {info.filename!r} is not a .npy array: {err}") from None
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise DatasetFileError(
                f"member {info.filename!r} declares a {dtype} array of shape {shape} but holds {info.file_size:,} bytes"
            )


def _strip_top(names: Sequence[str]) -> tuple[str, list[str]]:
    """The one folder all names sit in ("" if none) and the names inside it."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        top = next(iter(tops)) + "/"
        return top, [name.removeprefix(top) for name in names]
    return "", list(names)


def _detect(members: Sequence[zipfile.ZipInfo]) -> DatasetFormat | None:
    names = [m.filename for m in members if not _ignored(m.filename)]
    if names and all(name.endswith(".npy") and "/" not in name for name in names):
        return "npz"
    _, inner = _strip_top(names)
    if any(name.startswith(("train/", "test/")) for name in inner):
        return "imagefolder"
    stems = {name.removesuffix(".gz") for name in inner}
    if all(stem in stems for stem in IDX_FILES):
        return "idx"
    return None


def _ignored(name: str) -> bool:
    """Files that archivers add beside the content (macOS resource forks, Finder files)."""
    parts = PurePosixPath(name).parts
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"


def _describe(members: Sequence[zipfile.ZipInfo], found: DatasetFormat | None) -> str:
    if found is not None:
        return f"it is a {_DESCRIPTIONS[found]}"
    shown = ", ".join(m.filename for m in members[:5]) + (", ..." if len(members) > 5 else "")
    return f"it holds {shown or 'nothing'}; expected a " + ", or a ".join(_DESCRIPTIONS.values())


def _extract(
    archive: zipfile.ZipFile, members: Sequence[zipfile.ZipInfo], into: Path, limits: ArchiveLimits, *, gunzip: bool
) -> Path:
    """Extract the (checked) members under `into`, counting bytes as they are written; the content root.

    With `gunzip`, ``.gz`` members are decompressed as they are extracted, inside the same byte budget
    (a gzip bomb stops at the limit instead of filling the disk).
    """
    budget = limits.max_bytes
    kept = [m for m in members if not _ignored(m.filename)]
    top, _ = _strip_top([m.filename for m in kept])
    for info in kept:
        name = info.filename.removesuffix(".gz") if gunzip else info.filename
        target = into / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = target.open("wb")
        except OSError as err:
            raise DatasetFileError(f"member {info.filename!r} cannot be extracted: {err.strerror}") from None
        with archive.open(info) as raw, out:
            src = gzip.GzipFile(fileobj=raw) if gunzip and info.filename.endswith(".gz") else raw
            try:
                while chunk := src.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:
                        raise DatasetFileError(f"the archive expands to over {limits.max_bytes:,} bytes")
                    out.write(chunk)
            except (OSError, EOFError, zlib.error) as err:
                raise DatasetFileError(f"member {info.filename!r} is not valid gzip ({err})") from None
    return into / top if top else into


def _check_images(root: Path, limits: ArchiveLimits) -> None:
    """Refuse images over `max_side`, and a set whose decoded size would pass `max_bytes`, before decoding.

    Every image's header is read (cheap: PIL decodes lazily), so no image escapes the limits.
    """
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    decoded = 0
    for path in paths:
        member = path.relative_to(root)
        try:
            with Image.open(path) as img:
                width, height = img.size
        except (OSError, Image.DecompressionBombError) as err:
            reason = str(err).replace(str(path), str(member))
            raise DatasetFileError(f"{member} is not a readable image: {reason}") from None
        if max(width, height) > limits.max_side:
            raise DatasetFileError(f"{member} is {width}x{height}; images may be at most {limits.max_side} px a side")
        decoded += width * height * 3
        if decoded > limits.max_bytes:
            raise DatasetFileError(f"the {len(paths):,} images decode to over {limits.max_bytes:,} bytes")


def _load_quietly(format: DatasetFormat, root: Path, scratch: Path, label: str) -> ImageData:
    """`load_dataset`, with the scratch directory removed from its error messages."""
    try:
        return load_dataset(format, root, download=False)
    except (ValueError, OSError, Image.DecompressionBombError) as err:
        text = str(err).replace(f"{root}/", "").replace(str(root), label).replace(f"{scratch}/", "")
        raise DatasetFileError(text) from None
