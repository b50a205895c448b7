"""Where dataset files are looked for, and where downloads go."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

DATA_DIR_ENV = "HWNAS_DATA_DIR"
"""Environment variable naming a directory that holds one sub-directory per dataset."""

_DEBIAN_DATASETS = Path("/usr/share/datasets")


def _search_dirs(name: str, root: Path | None, debian_dir: str | None = None) -> list[tuple[str, Path | None]]:
    """(description, directory) in lookup order; directory None where an unset variable names none."""
    env = os.environ.get(DATA_DIR_ENV)
    places: list[tuple[str, Path | None]] = [("root", root)] if root is not None else []
    places.append((f"${DATA_DIR_ENV}/{name}", Path(env).expanduser() / name if env else None))
    places.append(("cache", _cache_dir(name)))
    if debian_dir is not None:
        places.append(("Debian datasets", _DEBIAN_DATASETS / debian_dir))
    return places


def _cache_dir(name: str) -> Path:
    return Path.home() / ".cache" / "hwnas" / name


def _download_dir(name: str) -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() / name if env else _cache_dir(name)


def _describe_places(places: Sequence[tuple[str, Path | None]], missing: Callable[[Path], str]) -> str:
    lines = []
    for label, directory in places:
        if directory is None:
            lines.append(f"  {label}: (not set)")
        elif not directory.is_dir():
            lines.append(f"  {label}: {directory} (no such directory)")
        else:
            lines.append(f"  {label}: {directory} ({missing(directory)})")
    return "\n".join(lines)


def _require_root(name: str, root: Path | None, what: str) -> Path:
    if root is None:
        raise ValueError(f"dataset {name!r} needs root: {what}")
    return root
