"""Transfer learning: a pretrained supernet's weights (an OFA checkpoint, an earlier run) into a new supernet.

The checkpoint must be of the same space and width: every tensor must match a tensor of the
supernet in name (OFA's renaming rules) and shape, and every supernet tensor must be there
(kernel-transform matrices and BN counters excepted), with two exceptions, the ones that depend
on the data rather than on the architecture:

- the first conv's input channels: its weight is adapted (`adapt_first_conv`);
- the classifier's classes: it keeps its fresh initialisation.

Anything else (a w1.2 checkpoint into a w1.0 supernet, another preset, an unrelated network) is
refused with the mismatches named, and the supernet is left unchanged.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nas.supernet.checkpoint import OPTIONAL_KEY_SUFFIXES, merge_ofa_state_dict, ofa_model_key, unwrap_state_dict
from nas.supernet.ofa_mbv3 import OFAMobileNetV3, build_supernet

FIRST_CONV_WEIGHT = "first_conv.conv.weight"
CLASSIFIER_KEYS = ("classifier.linear.weight", "classifier.linear.bias")
PRETRAINED_FORMAT = "hwnas-pretrained/1"
"""The ``format`` entry in the safetensors metadata of a checked pretrained checkpoint (`save_pretrained`)."""


@dataclass
class TransferReport:
    """What `transfer_weights` did to each tensor of the supernet (each key is in exactly one list).

    Attributes:
        loaded: supernet keys whose tensor was copied from the checkpoint.
        adapted: supernet key -> how its checkpoint tensor was changed to fit.
        initialised: supernet key -> why it keeps its fresh value.
    """

    loaded: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)
    initialised: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the counts and the adapted and initialised tensors (the loaded ones are the rest)."""
        return {
            "loaded": len(self.loaded),
            "adapted": len(self.adapted),
            "initialised": len(self.initialised),
            "adapted_tensors": dict(self.adapted),
            "initialised_tensors": dict(self.initialised),
        }


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """A first-conv weight [out, c, k, k] for `in_channels` inputs: the mean over its c inputs, scaled by c/in_channels.

    Every new input channel gets the same filter, scaled so that an image whose channels are all
    equal (a grey image, given as 1 channel or copied into 3) gives the response the checkpoint gave
    (for 3 -> 1 channel: the sum of the RGB filters, i.e. 3 x their mean).
    """
    source = weight.shape[1]
    mean = weight.mean(dim=1, keepdim=True) * (source / in_channels)
    return mean.expand(-1, in_channels, -1, -1).contiguous()


def transfer_weights(supernet: OFAMobileNetV3, state_dict: Mapping[str, Tensor]) -> TransferReport:
    """Load a pretrained state dict into `supernet` (in place), adapting the data-dependent tensors.

    Args:
        supernet: the freshly built supernet (its space's input channels and classes are the data's).
        state_dict: the checkpoint's tensors (OFA key names, current or legacy).

    Returns:
        What was loaded, adapted or left initialised.

    Raises:
        ValueError: the checkpoint is not of this supernet's space and width (unknown keys, other
            shapes, missing tensors), listing the first mismatches; nothing was loaded.
    """
    current = supernet.state_dict()
    model_keys = set(current)
    report = TransferReport()
    prepared: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        target = ofa_model_key(key, model_keys)
        want = current[target].shape if target is not None else None
        if target == FIRST_CONV_WEIGHT and want is not None and _only_axis_differs(value, want, 1):
            prepared[key] = adapt_first_conv(value.to(current[target].dtype), want[1])
            report.adapted[target] = (
                f"input channels {value.shape[1]} -> {want[1]}: mean over the checkpoint's channels, "
                f"x{value.shape[1]}/{want[1]}"
            )
        elif target in CLASSIFIER_KEYS and want is not None and _only_axis_differs(value, want, 0):
            prepared[key] = current[target]
            report.initialised[target] = f"classes {value.shape[0]} -> {want[0]}: freshly initialised"
        else:
            prepared[key] = value
    try:
        merged = merge_ofa_state_dict(current, prepared, strict=True, name=supernet.space.name)
    except ValueError as exc:
        raise ValueError(f"the checkpoint is of another space or width: {exc}") from None
    seen = {ofa_model_key(k, model_keys) for k in prepared}
    for key in current:
        if key in report.adapted or key in report.initialised:
            continue
        if key in seen:
            report.loaded.append(key)
        else:
            assert key.endswith(OPTIONAL_KEY_SUFFIXES), key  # merge_ofa_state_dict refuses other missing keys
            report.initialised[key] = "not in the checkpoint: keeps its initial value"
    with torch.no_grad():
        supernet.load_state_dict(merged)
    return report


def _only_axis_differs(value: Tensor, want: torch.Size, axis: int) -> bool:
    """Whether `value` has the shape `want` except along `axis` (same rank)."""
    have = value.shape
    return (
        len(have) == len(want)
        and have[axis] != want[axis]
        and all(a == b for i, (a, b) in enumerate(zip(have, want, strict=True)) if i != axis)
    )


@dataclass(frozen=True)
class PretrainedInfo:
    """What a pretrained checkpoint is: the registered space it fits, with its own input channels and classes."""

    space: str
    in_channels: int
    num_classes: int
    tensors: int

    def metadata(self) -> dict[str, str]:
        """As safetensors metadata (strings)."""
        return {"format": PRETRAINED_FORMAT, "space": self.space, "in_channels": str(self.in_channels),
                "num_classes": str(self.num_classes), "tensors": str(self.tensors)}  # fmt: skip


def read_pretrained(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, told apart by content: safetensors, or a torch file (weights only).

    Nothing is unpickled beyond torch's weights-only loader. OFA's ``{"state_dict": ...}`` wrapper is removed.

    Raises:
        ValueError: the file is neither, is truncated or corrupt, or holds no mapping of names to tensors.
    """
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: a u64 header length, then the JSON header
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for bad bytes
            raise ValueError(f"a corrupt safetensors file: {_first_line(exc)}") from None
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise ValueError("neither a PyTorch checkpoint (a .pth zip archive or pickle) nor a safetensors file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line for line in str(exc).splitlines() if "Unpickler error" in line), _first_line(exc))
        raise ValueError(f"it holds objects other than tensors, refused by weights-only loading ({detail})") from None
    except Exception as exc:  # truncated or corrupt archives: zipfile, EOF and runtime errors
        raise ValueError(f"a corrupt PyTorch checkpoint: {_first_line(exc)}") from None
    return unwrap_state_dict(obj, "the checkpoint")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def identify_pretrained(state_dict: Mapping[str, Tensor]) -> PretrainedInfo:
    """The registered space whose supernet (at the checkpoint's own input channels and classes) it fits exactly.

    Shapes are compared on a supernet built on the meta device, so nothing is allocated.

    Raises:
        ValueError: it fits no registered space; the message names the closest one and its mismatches.
    """
    from nas.spaces import list_spaces

    first = _find(state_dict, FIRST_CONV_WEIGHT)
    classifier = _find(state_dict, CLASSIFIER_KEYS[0])
    if first is None or classifier is None or first.dim() != 4 or classifier.dim() != 2:
        raise ValueError(
            "not an OFA-MobileNetV3 state dict: it needs first_conv.conv.weight [C,in,3,3] and "
            f"classifier.linear.weight [classes,features] ({len(state_dict)} tensors, e.g. {_examples(state_dict)})"
        )
    in_channels, num_classes = int(first.shape[1]), int(classifier.shape[0])
    errors: dict[str, str] = {}
    scores: dict[str, int] = {}
    for name in list_spaces():
        with torch.device("meta"):
            current = build_supernet(name, in_channels=in_channels, num_classes=num_classes).state_dict()
        keys = set(current)
        mapped = {k: ofa_model_key(k, keys) for k in state_dict}
        scores[name] = sum(1 for k, t in mapped.items() if t is not None and current[t].shape == state_dict[k].shape)
        try:
            merge_ofa_state_dict(current, state_dict, strict=True, name=name)
        except ValueError as exc:
            errors[name] = str(exc)
            continue
        return PretrainedInfo(name, in_channels, num_classes, len(state_dict))
    closest = max(scores, key=lambda n: scores[n])
    raise ValueError(
        f"the checkpoint fits no registered space ({', '.join(errors)}); the closest, {closest}, "
        f"matches {scores[closest]} of its {len(state_dict)} tensors: {errors[closest]}"
    )


def save_pretrained(state_dict: Mapping[str, Tensor], info: PretrainedInfo, path: str | Path) -> None:
    """Write a checked checkpoint as safetensors, `info` in its metadata (read back with `read_pretrained`)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in state_dict.items()}, str(path), info.metadata())


def _find(state_dict: Mapping[str, Tensor], model_key: str) -> Tensor | None:
    """The tensor of `state_dict` that OFA's renaming maps to `model_key`, if any."""
    for key, value in state_dict.items():
        if ofa_model_key(key, {model_key}) == model_key:
            return value
    return None


def _examples(state_dict: Mapping[str, Tensor]) -> str:
    return ", ".join(list(state_dict)[:3]) or "none"
