"""The artefact store on a local (or shared network) directory."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

from store.artifacts.base import (
    CHUNK,
    ArtifactNotFoundError,
    ArtifactStore,
    StoredFile,
    VerifyingReader,
    check_key,
    check_sha256,
    stream_sha256,
)


class LocalArtifactStore(ArtifactStore):
    """Files under `root`; a put writes ``<name>.tmp-<random>`` beside the target, fsyncs it, then renames.

    Args:
        root: the store's directory (created if needed).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file that holds `key`."""
        return self.root / check_key(key)

    def put(self, key: str, source: bytes | Path) -> StoredFile:
        """Store `source` under `key` atomically (see `ArtifactStore.put`)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex}")
        digest, size = hashlib.sha256(), 0
        try:
            with tmp.open("wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                    digest.update(source)
                    size = len(source)
                else:
                    with Path(source).open("rb") as src:
                        while chunk := src.read(CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return StoredFile(key=key, size=size, sha256=digest.hexdigest())

    def _open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no artefact {key!r} in {self.root}") from None

    def open(self, key: str, sha256: str | None = None) -> BinaryIO | VerifyingReader:
        """A reader of the file (verifying `sha256` when given)."""
        fp = self._open(key)
        return fp if sha256 is None else VerifyingReader(fp, key, sha256)

    def open_verified(self, key: str, sha256: str) -> BinaryIO:
        """The file opened once, hashed through that handle, then rewound (see `ArtifactStore.open_verified`).

        The check reads the file once more than the download does (from the page cache, at the
        speed of sha256); a `put` meanwhile renames a new file into place and this handle keeps the
        one that was checked.
        """
        fp = self._open(key)
        try:
            check_sha256(key, stream_sha256(fp), sha256)
            fp.seek(0)
        except BaseException:
            fp.close()
            raise
        return fp

    def delete(self, key: str) -> None:
        """Remove the file (and nothing else)."""
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self.path(key).is_file()
