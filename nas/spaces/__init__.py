"""Registry of search-space presets, in the style of timm's model registry.

>>> from nas.spaces import get_space, list_spaces
>>> space = get_space("ofa_mbv3_d234_e346_k357_w1.0", resolutions=[160, 176, 192, 208, 224])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nas.registry import Registry
from nas.space import SearchSpace

SpaceFactory = Callable[[], SearchSpace]

_SPACES: Registry[SpaceFactory] = Registry("search space")

register_space = _SPACES.register
"""Decorator registering a zero-argument factory that returns a preset's full space (ValueError if taken)."""

list_spaces = _SPACES.names
"""Names of the registered presets, sorted."""


def get_space(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    kernel_sizes: Sequence[int] | None = None,
    expand_ratios: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    resolutions: Sequence[int] | None = None,
) -> SearchSpace:
    """A registered preset, optionally with other input channels / classes and narrowed choices.

    Args:
        name: a name from `list_spaces()`.
        num_classes: classifier outputs (default: the preset's).
        in_channels: input image channels (default: the preset's).
        kernel_sizes: subset of the preset's kernel sizes to keep.
        expand_ratios: subset of the preset's expand ratios to keep.
        depths: subset of the preset's stage depths to keep.
        resolutions: subset of the preset's input resolutions to keep.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
        ValueError: a restriction outside the preset's choices.
    """
    space = _SPACES.get(name)().with_io(in_channels=in_channels, num_classes=num_classes)
    return space.restrict(
        kernel_sizes=kernel_sizes, expand_ratios=expand_ratios, depths=depths, resolutions=resolutions
    )


from nas.spaces import ofa_mbv3  # noqa: E402,F401  (registers the built-in presets)

__all__ = ["SearchSpace", "get_space", "list_spaces", "register_space"]
