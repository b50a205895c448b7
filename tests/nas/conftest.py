"""The science tests run torch (two threads at most: fast and reproducible on small CI machines) and the OFA
reference files in ../shared/reference (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

torch.set_num_threads(2)

REFERENCE_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference"
"""OFA reference facts; CI clones the repository with shared/ beside it."""

REF_STATE_DICT = REFERENCE_DIR / "ofa_mbv3_w1.0_ref_state_dict.pt"
REF_CASES = REFERENCE_DIR / "ofa_mbv3_w1.0_ref_cases.pt"
REF_SHAPES = REFERENCE_DIR / "ofa_mbv3_w1.0_state_dict_shapes.json"


def _require(path: Path) -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"OFA reference directory {REFERENCE_DIR} is missing (clone shared/ beside the repo)")
    if not path.is_file():
        pytest.skip(f"OFA reference file {path} is missing")
    return path


@pytest.fixture(scope="session")
def ref_state_dict() -> dict[str, torch.Tensor]:
    """The w1.0 reference supernet state dict (upstream keys, random non-trivial weights)."""
    loaded = torch.load(_require(REF_STATE_DICT), map_location="cpu", weights_only=True)
    return dict(loaded)


@pytest.fixture(scope="session")
def ref_cases() -> list[dict[str, Any]]:
    """The 5 reference forward cases (arch, input, logits, subnet config and shapes)."""
    cases: list[dict[str, Any]] = torch.load(_require(REF_CASES), map_location="cpu", weights_only=True)
    return cases


@pytest.fixture(scope="session")
def ref_shapes() -> dict[str, list[int]]:
    """{key: shape} of the w1.0 supernet state dict, in OFA's order."""
    with _require(REF_SHAPES).open() as fp:
        shapes: dict[str, list[int]] = json.load(fp)
    return shapes
