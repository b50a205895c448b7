"""Writing the predictors' JSON files: parent folders created, the file replaced atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | Path, doc: Any, indent: int | None = None) -> Path:
    """Write `doc` as JSON to `path`, creating its folder; a reader never sees a half-written file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=indent))
    os.replace(tmp, path)
    return path
