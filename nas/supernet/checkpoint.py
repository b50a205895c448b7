"""Reading OFA checkpoints: key renaming (current and legacy names) and strict, all-or-nothing checks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

OPTIONAL_KEY_SUFFIXES = ("_matrix", "num_batches_tracked")
"""Model keys a checkpoint may omit (they keep their current value): kernel-transform matrices
(absent when OFA trained without them) and BN batch counters."""


def ofa_model_key(key: str, model_keys: set[str]) -> str | None:
    """Map a checkpoint key to a model key with OFA's renaming rules, or None if none applies.

    The rules, tried in order: ``.mobile_inverted_conv.`` -> ``.conv.``; then, if the key is not
    a model key, collapse ``.bn.bn.`` / ``.conv.conv.weight`` / ``.linear.linear.``, or expand
    ``.linear.`` / ``bn.`` / ``conv.weight`` to their doubled dynamic forms.
    """
    key = key.replace(".mobile_inverted_conv.", ".conv.")
    if key in model_keys:
        return key
    candidates = [
        (".bn.bn.", ".bn."),
        (".conv.conv.weight", ".conv.weight"),
        (".linear.linear.", ".linear."),
        (".linear.", ".linear.linear."),
        ("bn.", "bn.bn."),
        ("conv.weight", "conv.conv.weight"),
    ]
    for old, new in candidates:
        if old in key:
            renamed = key.replace(old, new)
            return renamed if renamed in model_keys else None
    return None


def _shape(t: Tensor) -> list[int]:
    return list(t.shape)


def merge_ofa_state_dict(
    current: Mapping[str, Tensor], incoming: Mapping[str, Tensor], *, strict: bool, name: str
) -> dict[str, Tensor]:
    """The model's state dict with every incoming tensor in place, after checking all of them.

    Args:
        current: the model's own state dict.
        incoming: the checkpoint's state dict (OFA key names, current or legacy).
        strict: whether model keys missing from `incoming` (other than optional ones) are an error.
        name: the model's name, for messages.

    Raises:
        ValueError: unknown keys, shape mismatches or missing keys, listing the first ones.
    """
    model_keys = set(current)
    merged = dict(current)
    problems: list[str] = []
    seen: set[str] = set()
    for key, value in incoming.items():
        target = ofa_model_key(key, model_keys)
        if target is None:
            problems.append(f"unexpected key {key}")
            continue
        seen.add(target)
        if _shape(value) != _shape(current[target]):
            problems.append(f"{key}: checkpoint shape {_shape(value)} != model shape {_shape(current[target])}")
            continue
        merged[target] = value.to(current[target].dtype)
    if strict:
        missing = [k for k in current if k not in seen and not k.endswith(OPTIONAL_KEY_SUFFIXES)]
        problems.extend(f"missing key {k}" for k in missing)
    if problems:
        shown = "; ".join(problems[:8])
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise ValueError(
            f"state_dict does not fit {name}: {len(problems)} problem(s): {shown}{more}. Nothing was loaded."
        )
    return merged


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint without unpickling code: safetensors, or a torch file via the weights-only loader.

    OFA's released checkpoints wrap the weights as ``{"state_dict": ...}``; that wrapper is removed.

    Raises:
        ValueError: the file holds no tensors mapping.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True), str(path))


def unwrap_state_dict(obj: object, what: str) -> dict[str, Tensor]:
    """The state dict in a loaded torch file: the object itself, or its ``"state_dict"`` entry (OFA's releases).

    Raises:
        ValueError: it is not a mapping of names to tensors (naming `what`).
    """
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ValueError(f"{what} holds no state_dict (a mapping of names to tensors)")
    return dict(obj)
