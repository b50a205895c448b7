"""A search space as JSON (its preset name, input channels, classes and choices) and back."""

from __future__ import annotations

from typing import Any

from nas.space import SearchSpace
from nas.spaces import get_space


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    """JSON-ready description from which `space_from_dict` rebuilds an equal space."""
    return {
        "name": space.name,
        "in_channels": space.backbone.in_channels,
        "num_classes": space.backbone.num_classes,
        "kernel_sizes": list(space.kernel_sizes),
        "expand_ratios": list(space.expand_ratios),
        "depths": list(space.depths),
        "resolutions": list(space.resolutions),
    }


def space_from_dict(data: dict[str, Any]) -> SearchSpace:
    """Inverse of `space_to_dict`.

    Raises:
        KeyError: unknown preset name.
        ValueError: choices outside the preset's.
    """
    return get_space(**data)
