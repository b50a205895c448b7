"""The artefact store interface: named immutable-by-convention files, addressed by a relative key."""

from __future__ import annotations

import hashlib
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

CHUNK = 1 << 20


class ArtifactIntegrityError(ValueError):
    """A stored file's sha256 differs from the one recorded when it was written.

    Args:
        key: the file's key.
        actual: the sha256 of what is stored now.
        expected: the sha256 recorded when it was written.
    """

    def __init__(self, key: str, actual: str, expected: str) -> None:
        super().__init__(f"artefact {key!r} is corrupt: sha256 {actual} != recorded {expected}")
        self.key, self.actual, self.expected = key, actual, expected


def check_sha256(key: str, actual: str, expected: str) -> None:
    """Compare the `actual` sha256 of the file under `key` with the recorded `expected` one.

    Raises:
        ArtifactIntegrityError: they differ.
    """
    if actual != expected:
        raise ArtifactIntegrityError(key, actual, expected)


class ArtifactNotFoundError(FileNotFoundError):
    """No file is stored under the key."""


@dataclass(frozen=True)
class StoredFile:
    """What `ArtifactStore.put` wrote: the key, the size in bytes and the sha256 (hex)."""

    key: str
    size: int
    sha256: str


def stream_sha256(fp: BinaryIO) -> str:
    """The sha256 (hex) of what `fp` has left to read, read to its end."""
    digest = hashlib.sha256()
    while chunk := fp.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file."""
    with path.open("rb") as fp:
        return stream_sha256(fp)


def check_key(key: str) -> str:
    """Validate a store key: a relative POSIX path without ``.``/``..`` parts or empty segments.

    Raises:
        ValueError: the key is empty, absolute, or escapes the store.
    """
    path = PurePosixPath(key)
    if not key or path.is_absolute() or "\\" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"artefact key {key!r} must be a relative path like 'jobs/1/model.onnx' (no '..', no '/x')")
    return key


class VerifyingReader:
    """A binary reader that hashes what is read and, at end of file, checks the sha256.

    Raises `ArtifactIntegrityError` from the read that reaches the end if the digest differs.
    """

    def __init__(self, fp: BinaryIO, key: str, expected_sha256: str) -> None:
        self._fp, self._key, self._expected = fp, key, expected_sha256
        self._hash = hashlib.sha256()
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes (all when negative)."""
        data = self._fp.read(size)
        self._hash.update(data)
        if not self._done and (not data or size < 0):
            self._done = True
            check_sha256(self._key, self._hash.hexdigest(), self._expected)
        return data

    def close(self) -> None:
        """Close the underlying file."""
        self._fp.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArtifactStore(ABC):
    """Where artefacts live (a local directory; object storage can implement the same six methods).

    Contract: `put` is atomic (a reader sees the old file or the whole new one, never a part) and
    returns the size and sha256 of what it stored; `get`/`open` with `sha256` verify the content
    (at the end of the read) and `open_verified` before the first byte, and raise
    `ArtifactIntegrityError` on a mismatch; a missing key raises `ArtifactNotFoundError`.
    Keys are relative POSIX paths (`check_key`). Instances are picklable (they travel to Ray tasks).
    """

    @abstractmethod
    def put(self, key: str, source: bytes | Path) -> StoredFile:
        """Store `source` (bytes, or a file to copy) under `key`, replacing any file there."""

    @abstractmethod
    def open(self, key: str, sha256: str | None = None) -> BinaryIO | VerifyingReader:
        """A binary reader of the file; with `sha256`, reading to the end verifies it."""

    @abstractmethod
    def open_verified(self, key: str, sha256: str) -> BinaryIO:
        """A reader at the start of the file, whose whole content was checked against `sha256` first.

        For a response that must not begin with bytes it may have to disown (a download). What is
        checked is what the reader then returns, even if the key is replaced meanwhile.

        Raises:
            ArtifactIntegrityError: the content differs from `sha256` (nothing was returned).
            ArtifactNotFoundError: no file is stored under `key`.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file (no error if it is absent)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a file is stored under `key`."""

    def get(self, key: str, sha256: str | None = None) -> bytes:
        """The file's bytes; with `sha256`, verified."""
        with self.open(key, sha256) as fp:
            return fp.read()

    def put_tree(self, prefix: str, directory: Path) -> list[StoredFile]:
        """Store every file under `directory` as ``<prefix>/<relative path>``, in sorted order."""
        return [
            self.put(f"{check_key(prefix)}/{path.relative_to(directory).as_posix()}", path)
            for path in sorted(directory.rglob("*"))
            if path.is_file()
        ]

    def fetch_tree(self, files: dict[str, tuple[str, str]], directory: Path) -> Path:
        """Copy artefacts into `directory`, verifying each; `files` maps a relative name to (key, sha256).

        Raises:
            ArtifactIntegrityError: a file's content differs from its recorded sha256.
        """
        for name, (key, sha256) in files.items():
            target = directory / check_key(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.open(key, sha256) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
        return directory
