"""Downloading a file, saved only if its md5 matches."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

logger = logging.getLogger(__name__)

_DOWNLOAD_TIMEOUT_S = 60.0


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch ``url`` into a temporary file beside ``dest``, renamed to ``dest`` only if its md5 matches.

    Raises:
        ValueError: the checksum does not match (the temporary file is deleted).
        OSError: the download failed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        logger.info("downloading %s to %s", url, dest)
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise ValueError(
                f"{dest.name} downloaded from {url} has md5 {digest.hexdigest()}, expected {md5}: the download "
                f"is corrupt or the server holds another file; it was deleted and nothing was saved to {dest}"
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
