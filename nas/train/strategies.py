"""Supernet training strategies: which subnets each step trains, and with which teacher.

A strategy splits training into phases. Each phase has a sub-space to sample from, a number of
epochs and a peak learning rate. Each step, the strategy names the subnets to train on the batch;
the first one is the teacher for in-place distillation when `inplace_teacher` is set.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nas.registry import Registry
from nas.space import Arch, SearchSpace
from nas.train.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    """One phase of training.

    Attributes:
        name: the phase's name (checkpoints record it).
        epochs: epochs in this phase.
        lr: peak learning rate.
        space: the sub-space this phase samples from.
        sort_channels: if not None, `sort_channels(expand_stage)` is applied when the phase starts.
        frozen_teacher: distil from a frozen copy of the network as it was after the first phase.
    """

    name: str
    epochs: int
    lr: float
    space: SearchSpace
    sort_channels: int | None = None
    frozen_teacher: bool = False


class Strategy(ABC):
    """How a supernet is trained.

    Contract: `phases` is a pure function of the config and space; `step_archs` draws only from
    `rng`, so a run is reproducible from its seed. When `inplace_teacher` is true, the first arch
    of every step is trained on the labels and the others distil from its output.
    """

    name: str
    inplace_teacher: bool

    @abstractmethod
    def phases(self, config: TrainConfig, space: SearchSpace) -> list[Phase]:
        """The phases of training, in order."""

    @abstractmethod
    def step_archs(self, phase: Phase, config: TrainConfig, rng: np.random.Generator, resolution: int) -> list[Arch]:
        """The subnets to train on one batch, at `resolution`."""


def _at(archs: list[Arch], resolution: int) -> list[Arch]:
    return [{**arch, "r": resolution} for arch in archs]


LARGEST_PHASE = "largest"
"""The sandwich's optional first phase: the largest subnet alone."""


def largest_space(space: SearchSpace) -> SearchSpace:
    """The sub-space of the largest kernel, expand ratio and depth (all resolutions)."""
    k, e, d = space.kernel_sizes, space.expand_ratios, space.depths
    return space.restrict(kernel_sizes=k[-1:], expand_ratios=e[-1:], depths=d[-1:])


class Sandwich(Strategy):
    """BigNAS's sandwich rule: largest, smallest and N random subnets per step, in-place distillation."""

    name = "sandwich"
    inplace_teacher = True

    def phases(self, config: TrainConfig, space: SearchSpace) -> list[Phase]:
        """One phase over the whole space, after `config.largest_first_epochs` of the largest subnet alone."""
        sandwich = Phase("sandwich", config.epochs - config.largest_first_epochs, config.peak_lr, space)
        if not config.largest_first_epochs:
            return [sandwich]
        return [Phase(LARGEST_PHASE, config.largest_first_epochs, config.peak_lr, largest_space(space)), sandwich]

    def step_archs(self, phase: Phase, config: TrainConfig, rng: np.random.Generator, resolution: int) -> list[Arch]:
        """Largest (the teacher), smallest, then `num_random` random subnets; the largest alone in its phase."""
        s = phase.space
        if phase.name == LARGEST_PHASE:
            return _at([s.max_arch()], resolution)
        archs = _at([s.max_arch(), s.min_arch(), *s.sample(rng, config.num_random)], resolution)
        if config.largest_at_top_resolution:
            archs[0]["r"] = max(s.resolutions)
        return archs


PS_PHASES: tuple[tuple[str, float, float], ...] = (
    ("full", 0.25, 1.0),
    ("kernel", 0.15, 0.3),
    ("depth_1", 0.15, 0.1),
    ("depth_2", 0.15, 0.1),
    ("expand_1", 0.15, 0.1),
    ("expand_2", 0.15, 0.1),
)
"""OFA's order with (share of the epochs, learning-rate factor) per phase. OFA's ImageNet run used
180/120/25+120/25+120 epochs and peak lrs 2.6/0.96/0.08+0.24/0.08+0.24 (x batch/256); with few
epochs we give each later phase an equal share."""


def split_epochs(total: int, shares: list[float]) -> list[int]:
    """Split `total` epochs by `shares` (largest remainder), at least one per phase.

    Raises:
        ValueError: fewer epochs than phases.
    """
    if total < len(shares):
        raise ValueError(f"progressive shrinking needs at least {len(shares)} epochs (one per phase), got {total}")
    raw = np.asarray(shares) / sum(shares) * (total - len(shares))
    epochs = np.floor(raw).astype(int) + 1
    for i in np.argsort(-(raw - np.floor(raw)))[: total - int(epochs.sum())]:
        epochs[i] += 1
    return [int(e) for e in epochs]


class ProgressiveShrinking(Strategy):
    """OFA's progressive shrinking: full network, then elastic kernel, depth, expand; KD from the full net."""

    name = "progressive_shrinking"
    inplace_teacher = False

    def _phase_spaces(self, space: SearchSpace) -> dict[str, tuple[SearchSpace, int | None]]:
        e, d = space.expand_ratios, space.depths
        kernel = space.restrict(expand_ratios=e[-1:], depths=d[-1:])
        return {
            "full": (largest_space(space), None),
            "kernel": (kernel, None),
            "depth_1": (space.restrict(expand_ratios=e[-1:], depths=d[-2:]), None),
            "depth_2": (space.restrict(expand_ratios=e[-1:]), None),
            "expand_1": (space.restrict(expand_ratios=e[-2:]), 1),
            "expand_2": (space, 2),
        }

    def phases(self, config: TrainConfig, space: SearchSpace) -> list[Phase]:
        """The six phases, with epochs split from `config.epochs` or taken from `config.phases`."""
        spaces = self._phase_spaces(space)
        if config.phases is not None:
            unknown = [p.name for p in config.phases if p.name not in spaces]
            if unknown:
                raise ValueError(f"unknown progressive-shrinking phase(s) {unknown}; known: {list(spaces)}")
            plan = [(p.name, p.epochs, p.lr) for p in config.phases]
        else:
            epochs = split_epochs(config.epochs, [share for _, share, _ in PS_PHASES])
            plan = [(name, n, config.peak_lr * f) for (name, _, f), n in zip(PS_PHASES, epochs, strict=True)]
        return [
            Phase(name, n, lr, spaces[name][0], sort_channels=spaces[name][1], frozen_teacher=name != "full")
            for name, n, lr in plan
        ]

    def step_archs(self, phase: Phase, config: TrainConfig, rng: np.random.Generator, resolution: int) -> list[Arch]:
        """The full network in the first phase; else `max(1, num_random)` random subnets of the phase."""
        if phase.name == "full":
            return _at([phase.space.max_arch()], resolution)
        return _at(phase.space.sample(rng, max(1, config.num_random)), resolution)


class Standalone(Strategy):
    """One fixed subnet trained from scratch at its own resolution: the baseline OFA is compared with."""

    name = "standalone"
    inplace_teacher = False

    def phases(self, config: TrainConfig, space: SearchSpace) -> list[Phase]:
        """One phase at the arch's resolution.

        Raises:
            ValueError: the config's arch is not in the space.
        """
        assert config.arch is not None
        arch = space.canonical(config.arch)
        return [Phase("standalone", config.epochs, config.peak_lr, space.restrict(resolutions=[arch["r"]]))]

    def step_archs(self, phase: Phase, config: TrainConfig, rng: np.random.Generator, resolution: int) -> list[Arch]:
        """The configured subnet."""
        assert config.arch is not None
        return _at([phase.space.canonical(config.arch)], resolution)


_STRATEGIES: Registry[Callable[[], Strategy]] = Registry("training strategy")
for _strategy in (Sandwich, ProgressiveShrinking, Standalone):
    _STRATEGIES.register(_strategy.name)(_strategy)


def get_strategy(name: str) -> Strategy:
    """A strategy by name.

    Raises:
        KeyError: unknown name, listing the known ones.
    """
    return _STRATEGIES.get(name)()


def list_strategies() -> list[str]:
    """Names of the training strategies."""
    return _STRATEGIES.names()
